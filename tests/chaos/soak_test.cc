// The soak (not in CI; tests/chaos/soak runs it): the service under a steady stream for
// RUNNEL_SOAK_SECONDS (default 600) at RUNNEL_SOAK_RATE events/s (default 8000; see
// tests/chaos/soak for why), with a fault every RUNNEL_SOAK_FAULT_EVERY seconds (default 60),
// in turn: SIGKILL and restart, the broker holding every leader down for 10 s, leaders moved,
// 2 s broker latency for 20 s, a full disk for 10 s, failing Fetch and OffsetCommit requests.
// Every 5 s it samples the service's resident memory and its consumer lag. At the end the
// producer stops, the service catches up, and an --available-now run finishes.
// The service is held to what the topic holds: a witness (kcat, from the beginning) reads the
// log beside it, so a record the producer wrote twice (a retried produce request the broker had
// already appended: librdkafka 2.0's mock broker does not deduplicate idempotent retries) is
// told apart from one the service counted twice. Prints
//   soak: ... rss_growth_mib_per_hour=G lag_max=.. lag_end=..
//   soak: against the log: lost=L duplicated=D max_key_diff=M
// and requires L = D = M = 0, and against the events produced no loss and exactly the
// producer's duplicates. Without a complete witness it requires exactness against the events.
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>
#include <unordered_set>

#include <gtest/gtest.h>

#include "tests/chaos/chaos_util.h"

namespace runnel::testing {
namespace {

using Clock = std::chrono::steady_clock;

double RssMiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("VmRSS:")) return std::stod(line.substr(6)) / 1024.0;  // kB
  }
  return 0;
}

struct Sample {
  double t = 0;  // seconds since the start
  double rss_mib = 0;
  double lag = 0;
  int life = 0;  // which service process (restarts start a new one)
};

// Least-squares slope of RSS over time within each process lifetime (after its first 60 s,
// which hold start-up and the first state and cache fills), in MiB per hour; the largest.
double GrowthMiBPerHour(const std::vector<Sample>& samples) {
  double worst = 0;
  for (int life = 0; life <= (samples.empty() ? -1 : samples.back().life); ++life) {
    std::vector<const Sample*> s;
    double start = -1;
    for (const auto& x : samples) {
      if (x.life != life) continue;
      if (start < 0) start = x.t;
      if (x.t >= start + 60) s.push_back(&x);
    }
    if (s.size() < 12) continue;  // under a minute of samples says nothing
    double mt = 0, mr = 0;
    for (const auto* x : s) mt += x->t, mr += x->rss_mib;
    mt /= s.size(), mr /= s.size();
    double num = 0, den = 0;
    for (const auto* x : s)
      num += (x->t - mt) * (x->rss_mib - mr), den += (x->t - mt) * (x->t - mt);
    if (den > 0) worst = std::max(worst, num / den * 3600);
  }
  return worst;
}

TEST(SoakTest, DISABLED_SteadyRateWithAFaultEveryMinuteStaysExact) {
  const int seconds = EnvInt("RUNNEL_SOAK_SECONDS", 600);
  const int rate = EnvInt("RUNNEL_SOAK_RATE", 8000);
  const int fault_every = EnvInt("RUNNEL_SOAK_FAULT_EVERY", 60);
  const int64_t events = int64_t{seconds} * rate;
  Broker broker({"clicks:16"}, /*brokers=*/3);
  TempDir dir;
  const std::vector<std::string> gen = {RunnelBinary(),         "gen",    "--events",
                                        std::to_string(events), "--seed", "4242",
                                        "--disorder",           "30"};
  std::vector<std::string> to_file = gen;
  to_file.insert(to_file.end(), {"--out", dir.path() + "/events.jsonl"});
  ASSERT_EQ(RunProcess(to_file).exit_code, 0);
  std::vector<std::string> to_kafka = gen;
  to_kafka.insert(to_kafka.end(), {"--bootstrap", broker.bootstrap(), "--topic", "clicks", "--rate",
                                   std::to_string(rate)});

  // Batches may read 4 s of the stream per partition: room to catch up after a fault.
  std::string config = Serving(WithKafkaSource(HourlyConfig(dir.path(), "unused", 1000, "1d"),
                                               broker.bootstrap(), std::max(1000, rate / 4)),
                               "1s");
  const std::string topic = "topic: clicks,";
  config.replace(config.find(topic), topic.size(), topic + " assignment: all,");
  WriteText(dir.path() + "/q.yaml", config);
  const std::string disk_fault = dir.path() + "/disk-fault";
  int life = 0;
  auto start_service = [&] {
    auto s = std::make_unique<Service>(
        dir.path() + "/q.yaml", dir.path() + "/log" + std::to_string(life),
        std::vector<std::string>{"RUNNEL_DISK_FAULT_FILE=" + disk_fault});
    EXPECT_TRUE(s->WaitReady(std::chrono::seconds(120))) << "life " << life;
    return s;
  };
  auto service = start_service();
  for (int p = 0; p < 16; ++p) broker.Control("leader clicks " + std::to_string(p) + " 1");

  const std::string witness_out = dir.path() + "/witness";
  const pid_t witness = Spawn({"kcat", "-C", "-q", "-b", broker.bootstrap(), "-t", "clicks", "-o",
                               "beginning", "-X", "auto.offset.reset=error", "-f", "%p %o %s\\n"},
                              dir.path() + "/witness.log", witness_out);
  const pid_t producer = Spawn(to_kafka, dir.path() + "/gen.log");
  const auto t0 = Clock::now();
  auto now = [&] { return std::chrono::duration<double>(Clock::now() - t0).count(); };
  std::vector<Sample> samples;
  auto sample = [&] {
    const std::string metrics = Body(Get(service->Url("/metrics")));
    const double lag = SumOf(metrics, "runnel_kafka_consumer_lag_records");
    samples.push_back({now(), RssMiB(service->pid()), lag, life});
    std::printf("soak: t=%.0fs life=%d rss=%.0fMiB lag=%.0f records=%.0f\n", samples.back().t, life,
                samples.back().rss_mib, lag, SumOf(metrics, "runnel_records_total"));
    std::fflush(stdout);
  };
  // RUNNEL_SOAK_FAULTS: a comma-separated subset, to tell which fault does what.
  std::vector<std::string> kFaults = {"kill",    "broker_down", "leaders_moved",
                                      "latency", "disk_full",   "request_errors"};
  if (const char* only = std::getenv("RUNNEL_SOAK_FAULTS")) {  // NOLINT(concurrency-mt-unsafe)
    kFaults.clear();
    std::stringstream list(only);
    for (std::string f; std::getline(list, f, ',');) kFaults.push_back(f);
  }
  std::map<std::string, int> faults;
  std::function<void()> undo;
  double undo_at = 0, next_sample = 0;
  for (int k = 0; now() < seconds;) {
    if (now() >= next_sample) {
      sample();
      next_sample += 5;
    }
    if (undo && now() >= undo_at) {
      undo();
      undo = nullptr;
    }
    if (!undo && now() >= (k + 1) * fault_every) {
      const std::string fault = kFaults[static_cast<size_t>(k) % kFaults.size()];
      std::printf("soak: t=%.0fs fault %s\n", now(), fault.c_str());
      ++faults[fault];
      ++k;
      if (fault == "kill") {
        service.reset();  // SIGKILL
        ++life;
        service = start_service();
      } else if (fault == "broker_down") {
        for (int p = 0; p < 16; ++p) broker.Control("leader clicks " + std::to_string(p) + " 1");
        broker.Control("down 1");
        undo = [&] { broker.Control("up 1"); };
        undo_at = now() + 10;
      } else if (fault == "leaders_moved") {
        for (int p = 0; p < 16; ++p) {
          broker.Control("leader clicks " + std::to_string(p) + " " + std::to_string(1 + p % 3));
        }
      } else if (fault == "latency") {
        for (int b = 1; b <= 3; ++b) broker.Control("rtt " + std::to_string(b) + " 2000");
        undo = [&] {
          for (int b = 1; b <= 3; ++b) broker.Control("rtt " + std::to_string(b) + " 0");
        };
        undo_at = now() + 20;
      } else if (fault == "disk_full") {
        WriteText(disk_fault, "enospc\n");
        undo = [&] { std::filesystem::remove(disk_fault); };
        undo_at = now() + 10;
      } else {
        broker.Control("errors 1 50 6");   // Fetch: NOT_LEADER_FOR_PARTITION
        broker.Control("errors 8 10 15");  // OffsetCommit: COORDINATOR_NOT_AVAILABLE
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (undo) undo();
  const double produced_at = now();
  const double lag_end =
      SumOf(Body(Get(service->Url("/metrics"))), "runnel_kafka_consumer_lag_records");
  EXPECT_EQ(WaitFor(producer), 0) << "the producer: " << ServiceLog(dir.path() + "/gen.log");
  // How many messages the topic holds (its end offsets: offsets start at 0, no transactions):
  // more than the events produced means the producer wrote some twice (a retry the broker had
  // already applied), which the service then rightly counts twice.
  std::vector<std::string> query = {"timeout", "30", "kcat", "-Q", "-b", broker.bootstrap()};
  for (int p = 0; p < 16; ++p)
    query.insert(query.end(), {"-t", "clicks:" + std::to_string(p) + ":-1"});
  int64_t in_topic = 0;
  {
    std::istringstream lines(RunProcess(query).out);
    for (std::string line; std::getline(lines, line);) {
      if (const size_t at = line.rfind("offset "); at != std::string::npos) {
        in_topic += std::stoll(line.substr(at + 7));
      }
    }
  }
  // The witness has read what it will once its output stops growing.
  for (auto size = std::filesystem::file_size(witness_out), last = size - 1; size != last;) {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    last = size;
    size = std::filesystem::file_size(witness_out);
  }
  kill(witness, SIGTERM);
  WaitFor(witness);
  while (now() < produced_at + 300 &&
         SumOf(Body(Get(service->Url("/metrics"))), "runnel_kafka_consumer_lag_records") > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  const double catch_up = now() - produced_at;
  sample();
  EXPECT_EQ(service->Terminate(std::chrono::seconds(60)), 0)
      << ServiceLog(dir.path() + "/log" + std::to_string(life));
  auto caught_up =
      RunProcess({RunnelBinary(), "run", "--config", dir.path() + "/q.yaml", "--available-now"});
  ASSERT_EQ(caught_up.exit_code, 0) << caught_up.err;

  const auto truth = PageViewsFromEvents(dir.path() + "/events.jsonl");
  std::map<std::string, int64_t> in_log;  // page views in the records the witness read
  int64_t witnessed = 0;
  {
    std::unordered_set<uint64_t> seen;  // partition << 48 | offset
    std::ifstream in(witness_out);
    for (std::string line; std::getline(in, line);) {
      const size_t a = line.find(' '), b = line.find(' ', a + 1);
      if (b == std::string::npos) continue;
      const uint64_t at = std::stoull(line.substr(0, a)) << 48 | std::stoull(line.substr(a + 1));
      if (seen.insert(at).second) AddPageView(std::string_view(line).substr(b + 1), in_log);
    }
    witnessed = static_cast<int64_t>(seen.size());
  }
  const bool witness_complete = witnessed == in_topic;
  const auto output = SinkContent(dir.path());
  const Exactness e = Compare(truth, output);
  const Exactness e_log = Compare(in_log, output);
  // Where in the stream the differences are: by event hour (the generator's time runs with
  // the stream, so an hour maps to a stretch of the soak).
  auto hour_of = [](const std::string& id) { return id.substr(id.rfind('|') + 1); };
  std::map<std::string, int64_t> events_by_hour;
  for (const auto& [id, want] : truth) events_by_hour[hour_of(id)] += want;
  auto print_by_hour = [&](const char* against, const Exactness& x) {
    std::map<std::string, int64_t> diff_by_hour;
    for (const auto& [id, d] : x.diffs) diff_by_hour[hour_of(id)] += d;
    int64_t before = 0;
    for (const auto& [hour, n] : events_by_hour) {
      if (diff_by_hour.count(hour)) {
        std::printf("soak: against %s, hour %s (events %ld..%ld of the stream): %+ld\n", against,
                    hour.c_str(), before, before + n, diff_by_hour[hour]);
      }
      before += n;
    }
  };
  print_by_hour("the events", e);
  print_by_hour("the log", e_log);
  double lag_max = 0, rss_max = 0;
  std::vector<double> lags;
  for (const auto& s : samples) {
    lag_max = std::max(lag_max, s.lag);
    rss_max = std::max(rss_max, s.rss_mib);
    lags.push_back(s.lag);
  }
  std::string fault_list;
  for (const auto& [name, n] : faults) fault_list += name + "=" + std::to_string(n) + " ";
  std::printf(
      "soak: seconds=%d rate=%d events=%ld restarts=%d faults: %s\n"
      "soak: rss_first=%.0fMiB rss_last=%.0fMiB rss_max=%.0fMiB rss_growth_mib_per_hour=%.0f\n"
      "soak: lag_p50=%.0f lag_max=%.0f lag_end=%.0f caught_up_after=%.1fs\n"
      "soak: topic_messages=%ld events_produced=%ld producer_duplicates=%ld witness_read=%ld\n"
      "soak: against the events: lost=%ld duplicated=%ld max_key_diff=%ld\n"
      "soak: against the log: lost=%ld duplicated=%ld max_key_diff=%ld%s\n",
      seconds, rate, events, life, fault_list.c_str(), samples.front().rss_mib,
      samples.back().rss_mib, rss_max, GrowthMiBPerHour(samples), Quantile(lags, 0.5), lag_max,
      lag_end, catch_up, in_topic, events, in_topic - events, witnessed, e.lost, e.duplicated,
      e.max_key_diff, e_log.lost, e_log.duplicated, e_log.max_key_diff,
      witness_complete ? "" : " (witness incomplete: judged against the events)");
  const Exactness& judged = witness_complete ? e_log : e;
  EXPECT_EQ(judged.lost, 0);
  EXPECT_EQ(judged.duplicated, 0);
  EXPECT_EQ(judged.max_key_diff, 0);
  EXPECT_EQ(e.lost, 0);
  EXPECT_EQ(e.duplicated, in_topic - events) << "page views beyond the events are the producer's";
  if (judged.lost != 0 || judged.duplicated != 0) {  // what the service said of its troubles
    for (int l = 0; l <= life; ++l) {
      for (const auto& line : ReadLines(dir.path() + "/log" + std::to_string(l))) {
        if (line.find(" warning ") != std::string::npos ||
            line.find(" error ") != std::string::npos) {
          std::printf("log%d: %s\n", l, line.substr(0, 300).c_str());
        }
      }
    }
  }
}

}  // namespace
}  // namespace runnel::testing
