#include "sinks/rejected_record.h"

#include <fmt/format.h>
#include <boost/beast/core/detail/base64.hpp>
#include <boost/json.hpp>

#include "common/logging.h"

namespace runnel::sinks {

std::string RejectedRecord(BatchId batch, size_t index, std::string_view reason,
                           const std::string& line) {
  boost::json::object record{
      {"_id", fmt::format("{}-{}", batch, index)}, {"reason", reason}, {"line", ToValidUtf8(line)}};
  if (record["line"].as_string() != line) {
    std::string encoded(boost::beast::detail::base64::encoded_size(line.size()), '\0');
    encoded.resize(boost::beast::detail::base64::encode(encoded.data(), line.data(), line.size()));
    record["line_base64"] = encoded;
  }
  return boost::json::serialize(record);
}

}  // namespace runnel::sinks
