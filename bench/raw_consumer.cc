// kafka_e2e's ceiling: a plain librdkafka consumer that reads every partition of a topic from
// the beginning and discards the messages, until it has read COUNT of them. Prints the rate.
//
//   raw_consumer BOOTSTRAP TOPIC COUNT
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: raw_consumer BOOTSTRAP TOPIC COUNT\n");
    return 2;
  }
  const std::string topic = argv[2];
  const long long want = std::atoll(argv[3]);
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  using Prop = std::pair<const char*, const char*>;
  for (auto [k, v] : {Prop{"bootstrap.servers", argv[1]}, Prop{"group.id", "raw"},
                      Prop{"enable.auto.commit", "false"}, Prop{"auto.offset.reset", "earliest"}}) {
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "raw_consumer: %s\n", err);
      return 1;
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (rk == nullptr) {
    std::fprintf(stderr, "raw_consumer: %s\n", err);
    return 1;
  }
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_t* t = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 0, t, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1) {
    std::fprintf(stderr, "raw_consumer: no metadata for %s\n", topic.c_str());
    return 1;
  }
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  for (int i = 0; i < md->topics[0].partition_cnt; ++i) {
    rd_kafka_topic_partition_list_add(list, topic.c_str(), md->topics[0].partitions[i].id)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  const auto start = std::chrono::steady_clock::now();
  long long read = 0, bytes = 0;
  auto last = start;
  while (read < want) {
    rd_kafka_message_t* msg = rd_kafka_consumer_poll(rk, 100);
    if (msg == nullptr) {
      if (std::chrono::steady_clock::now() - last > std::chrono::seconds(10)) break;  // stuck
      continue;
    }
    last = std::chrono::steady_clock::now();
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      ++read;
      bytes += static_cast<long long>(msg->len);
    }
    rd_kafka_message_destroy(msg);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"records\": %lld, \"bytes\": %lld, \"seconds\": %.3f}\n", read, bytes, seconds);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return read < want ? 1 : 0;
}
