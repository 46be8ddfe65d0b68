// Fuzz target: a checkpoint manifest file's bytes through the decoder. The same bytes are also
// framed with a correct length and CRC32C, so the protobuf message and the checks after the
// CRC (version, file names) are reached too. Properties: a decoded manifest re-encodes to
// bytes that decode to the same manifest; file names never leave the checkpoint's db/.
#include <cstdint>
#include <filesystem>
#include <string>

#include <boost/endian/conversion.hpp>

#include "checkpoint/checkpoint.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

namespace cp = runnel::checkpoint;

void Check(std::string_view bytes) {
  auto decoded = cp::DecodeManifest(bytes);
  if (!decoded.ok()) {
    FUZZ_CHECK(decoded.status().code() == runnel::StatusCode::kCorruption);
    return;
  }
  for (const auto& f : decoded->files()) {
    const std::filesystem::path name(f.name());
    FUZZ_CHECK(!f.name().empty() && !name.is_absolute());
    for (const auto& part : name) FUZZ_CHECK(part != "..");
  }
  const std::string again = cp::EncodeManifest(*decoded);
  auto redecoded = cp::DecodeManifest(again);
  FUZZ_CHECK(redecoded.ok());
  FUZZ_CHECK(cp::ManifestText(*redecoded) == cp::ManifestText(*decoded));
  (void)cp::ManifestJson(*decoded);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  Check(bytes);
  // The same bytes as the payload of a valid frame (magic as the encoder writes it, then
  // length and CRC32C, little-endian).
  std::string framed = cp::EncodeManifest({}).substr(0, 4);
  const uint32_t length = boost::endian::native_to_little(static_cast<uint32_t>(bytes.size()));
  const uint32_t crc = boost::endian::native_to_little(cp::Crc32c(bytes));
  framed.append(reinterpret_cast<const char*>(&length), 4);
  framed.append(reinterpret_cast<const char*>(&crc), 4);
  framed.append(bytes);
  Check(framed);
  return 0;
}
