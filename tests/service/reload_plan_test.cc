// PlanReload: what a config reload changes, decided from two configs alone.
#include "service/reload_plan.h"

#include <gtest/gtest.h>

#include "tests/service/service_test_util.h"

namespace runnel::testing {
namespace {

using service::Config;
using service::PlanReload;
using service::QueryChange;

class ReloadPlanTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteText(dir_.path() + "/in.jsonl", "{}\n"); }

  // Two queries over one file source; `edit` changes the text before it is parsed.
  Config Parse(const std::string& text) {
    std::vector<service::ConfigError> errors;
    auto c = service::ParseConfig(text, "runnel.yaml", &errors);
    EXPECT_TRUE(c.ok()) << (errors.empty() ? c.status().ToString() : errors[0].ToString());
    return c.ok() ? *c : Config{};
  }
  std::string Text(const std::string& pages_extra = "", const std::string& service_extra = "",
                   const std::string& window = "1h", int max_records = 1000) {
    return "service: { state_dir: " + dir_.path() + "/state" + service_extra +
           " }\n"
           "engine: { workers: 2, memory_budget: 1GiB }\n"
           "sources:\n"
           "  clicks: { type: file, path: " +
           dir_.path() + "/in.jsonl, max_records_per_batch: " + std::to_string(max_records) +
           " }\n"
           "queries:\n" +
           Query("pages", window, pages_extra) + Query("other", "1h", "");
  }
  static std::string Query(const std::string& name, const std::string& window,
                           const std::string& extra) {
    return "  - name: " + name +
           "\n"
           "    source: clicks\n"
           "    event_time: { field: ts }\n"
           "    window: " +
           window +
           "\n"
           "    group_by: [customer]\n"
           "    aggregates: { page_views: count }\n" +
           extra + "    sinks: [ { type: json_files, path: /tmp/out } ]\n";
  }
  static std::vector<std::pair<std::string, QueryChange::Kind>> Kinds(
      const service::ReloadPlan& plan) {
    std::vector<std::pair<std::string, QueryChange::Kind>> out;
    for (const auto& c : plan.changes) out.emplace_back(c.name, c.kind);
    return out;
  }

  TempDir dir_;
};

TEST_F(ReloadPlanTest, TheSameFileChangesNothing) {
  const Config running = Parse(Text());
  const auto plan = PlanReload(running, Parse(Text()));
  EXPECT_TRUE(plan.changes.empty());
  EXPECT_TRUE(plan.needs_restart.empty());
}

TEST_F(ReloadPlanTest, ANewQueryStartsAndARemovedOneStops) {
  const Config running = Parse(Text());
  std::string file = Text();
  file.replace(file.find("  - name: other"), std::string::npos, Query("third", "1h", ""));
  const auto plan = PlanReload(running, Parse(file));
  using K = QueryChange::Kind;
  EXPECT_EQ(Kinds(plan),
            (std::vector<std::pair<std::string, K>>{{"third", K::kStart}, {"other", K::kStop}}));
  ASSERT_EQ(plan.next.queries.size(), 2u);
  EXPECT_EQ(plan.next.queries[1].aggregation.name, "third");
}

TEST_F(ReloadPlanTest, AChangedDefinitionIsRefusedAndKeepsRunningAsItWas) {
  const Config running = Parse(Text());
  const auto plan = PlanReload(running, Parse(Text("", "", "30m")));
  ASSERT_EQ(plan.changes.size(), 1u);
  EXPECT_EQ(plan.changes[0].name, "pages");
  EXPECT_EQ(plan.changes[0].kind, QueryChange::Kind::kRefuse);
  EXPECT_NE(plan.changes[0].why.find("window=1800000ms"), std::string::npos) << plan.changes[0].why;
  EXPECT_NE(plan.changes[0].why.find("on_definition_change: reset"), std::string::npos);
  // The query to run is the running one.
  EXPECT_EQ(plan.next.queries[0].aggregation.window.length_ms, 3'600'000);
  EXPECT_EQ(plan.next.queries[0], running.queries[0]);
}

TEST_F(ReloadPlanTest, AChangedDefinitionWithResetIsRebuilt) {
  const Config running = Parse(Text());
  const auto plan =
      PlanReload(running, Parse(Text("    on_definition_change: reset\n", "", "30m")));
  ASSERT_EQ(plan.changes.size(), 1u);
  EXPECT_EQ(plan.changes[0].kind, QueryChange::Kind::kReset);
  EXPECT_EQ(plan.next.queries[0].aggregation.window.length_ms, 1'800'000);
}

TEST_F(ReloadPlanTest, SettingsThatMayChangeRestartTheQueryWithThem) {
  const Config running = Parse(Text());
  const auto plan = PlanReload(
      running,
      Parse(Text("    batch_interval: 250ms\n    output_mode: final\n    on_invalid: fail\n")));
  ASSERT_EQ(plan.changes.size(), 1u);
  EXPECT_EQ(plan.changes[0].name, "pages");
  EXPECT_EQ(plan.changes[0].kind, QueryChange::Kind::kRestart);
  EXPECT_NE(plan.changes[0].why.find("batch_interval: 1000ms -> 250ms"), std::string::npos)
      << plan.changes[0].why;
  EXPECT_NE(plan.changes[0].why.find("output_mode"), std::string::npos);
  EXPECT_NE(plan.changes[0].why.find("on_invalid"), std::string::npos);
  EXPECT_EQ(plan.next.queries[0].batch_interval_ms, 250);
}

TEST_F(ReloadPlanTest, ASourceChangeRestartsEveryQueryOnIt) {
  const Config running = Parse(Text());
  const auto plan = PlanReload(running, Parse(Text("", "", "1h", 50)));
  using K = QueryChange::Kind;
  EXPECT_EQ(Kinds(plan), (std::vector<std::pair<std::string, K>>{{"pages", K::kRestart},
                                                                 {"other", K::kRestart}}));
  EXPECT_NE(plan.changes[0].why.find("source clicks settings"), std::string::npos);
}

TEST_F(ReloadPlanTest, RestartOnlySettingsAreReportedAndKeepTheirRunningValues) {
  const Config running = Parse(Text());
  std::string file = Text("", ", http_listen: \"127.0.0.1:9999\"");
  file.replace(file.find("/state"), 6, "/elsewhere");
  file.replace(file.find("workers: 2, memory_budget: 1GiB"), 31, "workers: 4, memory_budget: 2GiB");
  const auto plan = PlanReload(running, Parse(file));
  EXPECT_TRUE(plan.changes.empty());
  ASSERT_EQ(plan.needs_restart.size(), 4u) << ::testing::PrintToString(plan.needs_restart);
  EXPECT_EQ(plan.needs_restart[0], "service.http_listen: 127.0.0.1:9464 -> 127.0.0.1:9999");
  EXPECT_TRUE(plan.needs_restart[1].starts_with("service.state_dir: "));
  EXPECT_EQ(plan.needs_restart[2], "engine.workers: 2 -> 4");
  EXPECT_EQ(plan.needs_restart[3], "engine.memory_budget: 1073741824 -> 2147483648");
  EXPECT_EQ(plan.next.state_dir, running.state_dir);
  EXPECT_EQ(plan.next.workers, 2);
  EXPECT_EQ(plan.next.memory_budget_bytes, int64_t{1} << 30);
  EXPECT_EQ(plan.next.http_listen, running.http_listen);
}

}  // namespace
}  // namespace runnel::testing
