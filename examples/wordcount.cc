// wordcount INPUT OUTPUT_DIR: counts whitespace-separated words, writing "word<TAB>count"
// lines to OUTPUT_DIR/part-NNNNN. The seed's first program.
#include <cstdio>

#include "examples/example_util.h"

namespace runnel::examples {

Status WordCount(const std::string& input, const std::string& output_dir) {
  ASSIGN_OR_RETURN(auto ctx, MakeExampleContext());
  ASSIGN_OR_RETURN(auto lines, ctx->TextFile({input}));
  auto counts = lines.FlatMap(SplitWords)
                    .Map([](std::string w) { return std::pair<std::string, int64_t>(w, 1); })
                    .ReduceByKey([](int64_t a, int64_t b) { return a + b; });
  return counts.SaveAsTextFile(output_dir);
}

}  // namespace runnel::examples

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: wordcount INPUT OUTPUT_DIR\n");
    return 64;
  }
  runnel::Status st = runnel::examples::WordCount(argv[1], argv[2]);
  return st.ok() ? 0 : runnel::examples::Fail(st);
}
