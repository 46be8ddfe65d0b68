// Context::TextFile: lines of files, one partition per file or per byte range.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine/rdd.h"

namespace runnel::engine {
namespace {

class TextFileNode final : public RddNode<std::string> {
 public:
  TextFileNode(Context* ctx, std::vector<Split> splits, std::string name)
      : RddNode<std::string>(ctx, std::move(name), static_cast<int>(splits.size()), {},
                             std::nullopt),
        splits_(std::move(splits)) {}

 protected:
  Status Compute(int p, TaskContext& tc, Emit<std::string> emit) override {
    const Split& split = splits_[static_cast<size_t>(p)];
    const int fd = ::open(split.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open " + split.path, errno);
    Status st = ReadLines(fd, split, tc, emit);
    ::close(fd);
    return st;
  }

 private:
  // Reads from begin-1 (to learn whether `begin` starts a line) and emits each line that
  // starts before `end`, including one that runs past it.
  static Status ReadLines(int fd, const Split& split, TaskContext& tc, Emit<std::string> emit) {
    int64_t pos = split.begin > 0 ? split.begin - 1 : 0;
    bool skipping = split.begin > 0;  // drop the partial line owned by the previous split
    std::string line;
    // Most of a split, in chunks of at most 1 MiB; a line running past `end` reads on.
    const int64_t want = std::clamp<int64_t>(split.end - split.begin + 1, 4096, 1 << 20);
    std::string buf(static_cast<size_t>(want), '\0');
    while (true) {
      const ssize_t n = ::pread(fd, buf.data(), buf.size(), pos);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("read " + split.path, errno);
      }
      if (n == 0) break;
      const char* data = buf.data();
      size_t i = 0;
      while (i < static_cast<size_t>(n)) {
        const int64_t line_start = pos + static_cast<int64_t>(i);
        if (!skipping && line.empty() && line_start >= split.end) return Status::OK();
        const void* nl = std::memchr(data + i, '\n', static_cast<size_t>(n) - i);
        const size_t stop =
            nl ? static_cast<size_t>(static_cast<const char*>(nl) - data) : static_cast<size_t>(n);
        if (!skipping) line.append(data + i, stop - i);
        i = stop;
        if (nl) {
          ++i;
          if (skipping) {
            skipping = false;
          } else {
            ++tc.metrics().records_in;
            if (!emit(std::move(line))) return Status::OK();
            line.clear();
          }
        }
      }
      pos += n;
    }
    if (!skipping && !line.empty()) {  // a last line without a newline
      ++tc.metrics().records_in;
      emit(std::move(line));
    }
    return Status::OK();
  }

  const std::vector<Split> splits_;
};

}  // namespace

Result<Rdd<std::string>> Context::TextFile(const std::vector<std::string>& paths,
                                           int64_t split_bytes) {
  if (split_bytes <= 0) return Status::InvalidArgument("split_bytes must be positive");
  std::vector<Split> splits;
  for (const std::string& path : paths) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat " + path, errno);
    const int64_t size = st.st_size;
    if (size == 0) {
      splits.push_back({path, 0, 0});
      continue;
    }
    for (int64_t begin = 0; begin < size; begin += split_bytes) {
      splits.push_back({path, begin, std::min(size, begin + split_bytes)});
    }
  }
  if (splits.empty()) return Status::InvalidArgument("TextFile needs at least one file");
  return Rdd<std::string>(std::make_shared<TextFileNode>(this, std::move(splits), "textFile"));
}

Rdd<std::string> Context::TextRanges(std::vector<Split> ranges, std::string name) {
  if (ranges.empty()) return Parallelize(std::vector<std::string>{}, 1);
  return Rdd<std::string>(std::make_shared<TextFileNode>(this, std::move(ranges), std::move(name)));
}

}  // namespace runnel::engine
