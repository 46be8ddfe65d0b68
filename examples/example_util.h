// Shared by the example programs: make a Context, report errors the same way.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "engine/rdd.h"

namespace runnel::examples {

// Splits on ASCII whitespace, dropping empty words (like `tr -s '[:space:]' '\n'`).
inline std::vector<std::string> SplitWords(const std::string& line) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    const size_t start = i;
    while (i < line.size() && !std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i > start) words.emplace_back(line, start, i - start);
  }
  return words;
}

// Prints `st` to stderr and returns the process exit code for it.
inline int Fail(const Status& st) {
  std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
  return 1;
}

inline Result<std::unique_ptr<engine::Context>> MakeExampleContext() {
  return engine::Context::Make({.workers = 2});
}

}  // namespace runnel::examples
