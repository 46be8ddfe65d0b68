// log_errors LOG: the RDD paper's log mining example. Lines starting with "ERROR" are kept
// in memory (persisted), counted, then those mentioning HDFS are narrowed to their tab-split
// field 3 (counting from 0, the time field of the paper's log format) and printed.
#include <cstdio>

#include "examples/example_util.h"

namespace runnel::examples {

Status LogErrors(const std::string& input) {
  ASSIGN_OR_RETURN(auto ctx, MakeExampleContext());
  ASSIGN_OR_RETURN(auto lines, ctx->TextFile({input}));
  auto errors = lines.Filter([](const std::string& l) { return l.starts_with("ERROR"); });
  errors.Persist(engine::StorageLevel::kMemoryOnly);
  ASSIGN_OR_RETURN(int64_t count, errors.Count());
  std::printf("errors: %lld\n", static_cast<long long>(count));
  auto hdfs_fields =
      errors.Filter([](const std::string& l) { return l.find("HDFS") != std::string::npos; })
          .Map([](const std::string& l) {
            size_t start = 0;
            for (int field = 0; field < 3; ++field) {
              const size_t tab = l.find('\t', start);
              if (tab == std::string::npos) return std::string();
              start = tab + 1;
            }
            return l.substr(start, l.find('\t', start) - start);
          });
  ASSIGN_OR_RETURN(std::vector<std::string> fields, hdfs_fields.Collect());
  for (const std::string& f : fields) std::printf("hdfs: %s\n", f.c_str());
  std::printf("cached blocks: %lld\n",
              static_cast<long long>(ctx->block_manager().stats().memory_blocks));
  return Status::OK();
}

}  // namespace runnel::examples

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: log_errors LOG\n");
    return 64;
  }
  runnel::Status st = runnel::examples::LogErrors(argv[1]);
  return st.ok() ? 0 : runnel::examples::Fail(st);
}
