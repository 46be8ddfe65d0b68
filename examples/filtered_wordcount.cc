// filtered_wordcount INPUT STOPWORDS OUTPUT_DIR: word count without the words listed in
// STOPWORDS (one per line), which every task reads from one broadcast set.
#include <cstdio>
#include <fstream>
#include <unordered_set>

#include "examples/example_util.h"

namespace runnel::examples {

Status FilteredWordCount(const std::string& input, const std::string& stopwords_path,
                         const std::string& output_dir) {
  ASSIGN_OR_RETURN(auto ctx, MakeExampleContext());
  ASSIGN_OR_RETURN(std::string stop_text, ReadFile(stopwords_path));
  auto stop_list = SplitWords(stop_text);
  auto stop =
      ctx->MakeBroadcast(std::unordered_set<std::string>(stop_list.begin(), stop_list.end()));
  ASSIGN_OR_RETURN(auto lines, ctx->TextFile({input}));
  auto counts = lines.FlatMap(SplitWords)
                    .Filter([stop](const std::string& w) { return !stop.value().contains(w); })
                    .Map([](std::string w) { return std::pair<std::string, int64_t>(w, 1); })
                    .ReduceByKey([](int64_t a, int64_t b) { return a + b; });
  return counts.SaveAsTextFile(output_dir);
}

}  // namespace runnel::examples

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: filtered_wordcount INPUT STOPWORDS OUTPUT_DIR\n");
    return 64;
  }
  runnel::Status st = runnel::examples::FilteredWordCount(argv[1], argv[2], argv[3]);
  return st.ok() ? 0 : runnel::examples::Fail(st);
}
