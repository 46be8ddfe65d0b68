// min_accumulator NUMBERS: the smallest integer of a file (one per line) through a custom
// accumulator (zero = the largest int64, merge = min), and a sum accumulator of the lines read.
// Lines that are not integers are counted and skipped.
#include <charconv>
#include <cstdio>
#include <limits>

#include "examples/example_util.h"

namespace runnel::examples {

Status MinAccumulator(const std::string& input) {
  ASSIGN_OR_RETURN(auto ctx, MakeExampleContext());
  auto min = ctx->MakeAccumulator<int64_t>(std::numeric_limits<int64_t>::max(),
                                           [](int64_t a, int64_t b) { return std::min(a, b); });
  auto lines_read = engine::MakeSumAccumulator<int64_t>();
  auto bad_lines = engine::MakeSumAccumulator<int64_t>();
  ASSIGN_OR_RETURN(auto lines, ctx->TextFile({input}));
  RETURN_NOT_OK(lines.Foreach([&](const std::string& line) {
    lines_read.Add(1);
    int64_t value = 0;
    auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), value);
    if (ec != std::errc() || end != line.data() + line.size()) {
      bad_lines.Add(1);
      return;
    }
    min.Add(value);
  }));
  std::printf("lines: %lld\nskipped: %lld\nmin: %lld\n", static_cast<long long>(lines_read.value()),
              static_cast<long long>(bad_lines.value()), static_cast<long long>(min.value()));
  return Status::OK();
}

}  // namespace runnel::examples

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: min_accumulator NUMBERS\n");
    return 64;
  }
  runnel::Status st = runnel::examples::MinAccumulator(argv[1]);
  return st.ok() ? 0 : runnel::examples::Fail(st);
}
