#include "service/checkpoint_cli.h"

#include <iostream>

#include <fmt/format.h>
#include <boost/json.hpp>

#include "checkpoint/checkpoint.h"
#include "service/exit_codes.h"
#include "streaming/event_time.h"

namespace runnel::service {
namespace {

using checkpoint::CheckpointEntry;

std::string QueriesText(const checkpoint::v1::Manifest& m) {
  std::string out;
  for (const auto& q : m.queries()) {
    out += fmt::format("{}{}@{}", out.empty() ? "" : ",", q.name(), q.batch_id());
  }
  return out.empty() ? "-" : out;
}

int List(const std::vector<CheckpointEntry>& entries, bool json) {
  if (json) {
    boost::json::array out;
    for (const CheckpointEntry& e : entries) {
      boost::json::object o{
          {"id", e.id}, {"path", e.path}, {"manifest_ok", e.manifest.has_value()}};
      if (e.manifest) {
        o["manifest"] = boost::json::parse(checkpoint::ManifestJson(*e.manifest));
      } else {
        o["error"] = e.manifest_status.ToString();
      }
      out.push_back(std::move(o));
    }
    std::cout << boost::json::serialize(out) << "\n";
    return kExitOk;
  }
  std::cout << fmt::format("{:>6}  {:<24}  {:>6}  {:>12}  {}\n", "ID", "CREATED (UTC)", "FILES",
                           "BYTES", "QUERIES@BATCH");
  for (const CheckpointEntry& e : entries) {
    if (!e.manifest) {
      std::cout << fmt::format("{:>6}  manifest unreadable: {}\n", e.id,
                               e.manifest_status.message());
      continue;
    }
    std::cout << fmt::format("{:>6}  {:<24}  {:>6}  {:>12}  {}\n", e.id,
                             streaming::FormatIsoTimestamp(e.manifest->created_unix_ms()),
                             e.manifest->files_size(), checkpoint::ManifestBytes(*e.manifest),
                             QueriesText(*e.manifest));
  }
  return kExitOk;
}

int Verify(const std::vector<const CheckpointEntry*>& entries, bool json) {
  int code = kExitOk;
  boost::json::array out;
  for (const CheckpointEntry* e : entries) {
    const checkpoint::Verification v = checkpoint::Verify(*e);
    if (!v.status.ok()) code = kExitDataError;
    if (json) {
      boost::json::array problems;
      for (const auto& p : v.problems) problems.emplace_back(p);
      out.push_back(boost::json::object{{"id", e->id},
                                        {"ok", v.status.ok()},
                                        {"files", v.files},
                                        {"bytes", v.bytes},
                                        {"problems", std::move(problems)}});
    } else if (v.status.ok()) {
      std::cout << fmt::format("checkpoint {}: ok ({} files, {} bytes, CRC32C verified)\n", e->id,
                               v.files, v.bytes);
    } else {
      std::cout << fmt::format("checkpoint {}: CORRUPT\n", e->id);
      for (const auto& p : v.problems) std::cout << "  " << p << "\n";
    }
  }
  if (json) std::cout << boost::json::serialize(out) << "\n";
  return code;
}

}  // namespace

int RunCheckpointCommand(const CheckpointCommand& command) {
  auto entries = checkpoint::ListCheckpoints(command.state_dir);
  if (!entries.ok()) {
    std::cerr << "runnel checkpoint: " << entries.status().ToString() << "\n";
    return kExitFailure;
  }
  if (command.verb == "list") return List(*entries, command.json);

  std::vector<const CheckpointEntry*> chosen;
  for (const CheckpointEntry& e : *entries) {
    if (command.id == 0 || e.id == command.id) chosen.push_back(&e);
  }
  if (chosen.empty()) {
    std::cerr << fmt::format("runnel checkpoint {}: no checkpoint{} in {}/checkpoints\n",
                             command.verb, command.id ? fmt::format(" {}", command.id) : "",
                             command.state_dir);
    return kExitNoInput;
  }
  if (command.verb == "verify") return Verify(chosen, command.json);

  const CheckpointEntry& e = *chosen.back();  // inspect: the one asked for, or the newest
  if (!e.manifest) {
    std::cerr << fmt::format("checkpoint {}: {}\n", e.id, e.manifest_status.ToString());
    return kExitDataError;
  }
  std::cout << (command.json ? checkpoint::ManifestJson(*e.manifest) + "\n"
                             : checkpoint::ManifestText(*e.manifest));
  return kExitOk;
}

}  // namespace runnel::service
