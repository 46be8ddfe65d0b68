// Fuzz target: a config file's text through the loader (environment interpolation, YAML,
// validation). Properties: it either yields a config and no error, or fails with at least one
// error, each naming the file, a line and column inside the text, and what is wrong.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "service/config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<runnel::service::ConfigError> errors;
  auto config = runnel::service::ParseConfig(text, "fuzz.yaml", &errors);
  if (config.ok()) {
    FUZZ_CHECK(errors.empty());
    FUZZ_CHECK(config->file == "fuzz.yaml");
    return 0;
  }
  FUZZ_CHECK(!errors.empty());
  // Interpolation can make the text longer (${VAR:-default}), never more lines.
  const int lines = static_cast<int>(std::count(text.begin(), text.end(), '\n')) + 1;
  for (const auto& e : errors) {
    FUZZ_CHECK(e.file == "fuzz.yaml");
    FUZZ_CHECK(e.line >= 1 && e.line <= lines + 1);
    FUZZ_CHECK(e.column >= 1);
    FUZZ_CHECK(!e.message.empty());
  }
  return 0;
}
