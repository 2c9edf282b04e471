// The GUI's timeline model (gui/timeline_model.hpp), without Qt: rows, exact coverage per pixel
// column, the task under the cursor, and the text of a tooltip.
#include "gui/timeline_model.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace strata::gui {
namespace {

using strategies::Phase;
using strategies::Purpose;
using strategies::Stream;
using strategies::TaskKind;

results::TraceEvent task(int rank, Stream stream, double start, double duration,
                         TaskKind kind = TaskKind::kCompute, Phase phase = Phase::kForward,
                         Purpose purpose = Purpose::kNone) {
  results::TraceEvent e;
  e.rank = rank;
  e.stream = stream;
  e.kind = kind;
  e.phase = phase;
  e.purpose = purpose;
  e.start_s = start;
  e.duration_s = duration;
  e.name = "t" + std::to_string(static_cast<int>(start * 10));
  return e;
}

// Rank 1's compute: [0, 1) forward, [2, 3) backward; rank 1's dp stream: [1, 4) an all-reduce;
// rank 0's compute: [0.5, 1.5). Given out of order.
results::Trace sample() {
  results::Trace t;
  t.events.push_back(task(1, Stream::kCompute, 2, 1, TaskKind::kCompute, Phase::kBackward));
  t.events.push_back(task(1, Stream::kDp, 1, 3, TaskKind::kCollective, Phase::kNone, Purpose::kDp));
  t.events.push_back(task(0, Stream::kCompute, 0.5, 1));
  t.events.push_back(task(1, Stream::kCompute, 0, 1));
  return t;
}

TEST(TimelineModel, RowsByRankThenStreamWithTheirSlicesSorted) {
  const TimelineModel m(sample());
  ASSERT_EQ(m.rows().size(), 3u);
  EXPECT_EQ(m.rows()[0].rank, 0);
  EXPECT_EQ(m.rows()[1].rank, 1);
  EXPECT_EQ(m.rows()[1].stream, Stream::kCompute);
  EXPECT_EQ(m.rows()[2].stream, Stream::kDp);
  EXPECT_EQ(m.rows()[1].label, "rank 1 compute");
  ASSERT_EQ(m.rows()[1].slices.size(), 2u);
  EXPECT_EQ(m.rows()[1].slices[0].start_s, 0);
  EXPECT_EQ(m.rows()[1].slices[1].category, Category::kBackward);
  EXPECT_EQ(m.rows()[2].slices[0].category, Category::kDp);
  EXPECT_EQ(m.ranks(), (std::vector<int>{0, 1}));
  EXPECT_DOUBLE_EQ(m.end_s(), 4.0);
  EXPECT_EQ(m.task_count(), 4u);
  EXPECT_EQ(m.first_row_of(1), 1);
  EXPECT_EQ(m.first_row_of(7), -1);
}

TEST(TimelineModel, CoverageIsExactInEveryColumn) {
  const TimelineModel m(sample());
  // Rank 1's compute over [0, 4) in 8 columns of 0.5 s: busy, busy, idle, idle, busy, busy, idle, idle.
  std::vector<Pixel> px(8);
  m.rasterize(1, 0, 4, px);
  const std::vector<float> want = {1, 1, 0, 0, 1, 1, 0, 0};
  for (std::size_t i = 0; i < px.size(); ++i) EXPECT_FLOAT_EQ(px[i].coverage, want[i]) << i;
  EXPECT_EQ(px[0].category, Category::kForward);
  EXPECT_EQ(px[4].category, Category::kBackward);
  // Coarser than the tasks: 3 columns over [0, 3): [0,1) full, [1,2) empty, [2,3) full; and
  // 2 columns over [0, 4): half and half.
  std::vector<Pixel> two(2);
  m.rasterize(1, 0, 4, two);
  EXPECT_FLOAT_EQ(two[0].coverage, 0.5f);
  EXPECT_FLOAT_EQ(two[1].coverage, 0.5f);
  EXPECT_DOUBLE_EQ(m.busy(1, 0.5, 2.5), 1.0);
  EXPECT_DOUBLE_EQ(m.busy(2, 0, 10), 3.0);
  EXPECT_DOUBLE_EQ(m.busy(2, 5, 10), 0.0);
}

TEST(TimelineModel, AColumnOverManyTasksIsCoveredByTheirShare) {
  // 100,000 1-us tasks with 1-us gaps on one row: a column over many tasks is half covered.
  results::Trace t;
  const int n = 100000;
  t.events.reserve(n);
  for (int i = 0; i < n; ++i) t.events.push_back(task(0, Stream::kCompute, 2e-6 * i, 1e-6));
  const TimelineModel m(std::move(t));
  std::vector<Pixel> px(1000);
  m.rasterize(0, 0, 0.2, px);
  for (const Pixel& p : px) EXPECT_NEAR(p.coverage, 0.5, 1e-6);
  EXPECT_EQ(m.slices_in(0, 0, 0.2), static_cast<std::size_t>(n));
  EXPECT_EQ(m.slices_in(0, 1e-6 + 1e-9, 2e-6 - 1e-9), 0u);  // inside a gap
}

TEST(TimelineModel, TheTaskUnderTheCursor) {
  const TimelineModel m(sample());
  EXPECT_EQ(m.slice_at(1, 0.5, 0), 0);
  EXPECT_EQ(m.slice_at(1, 2.5, 0), 1);
  EXPECT_EQ(m.slice_at(1, 1.5, 0), -1);    // in the gap
  EXPECT_EQ(m.slice_at(1, 1.05, 0.1), 0);  // near the first's end
  EXPECT_EQ(m.slice_at(1, 1.95, 0.1), 1);  // near the second's start
  EXPECT_EQ(m.slice_at(1, 9, 0.1), -1);
  EXPECT_EQ(m.slices_in(1, 0.5, 2.5), 2u);
  EXPECT_EQ(m.slices_in(1, 1.2, 1.8), 0u);
}

TEST(TimelineModel, ATooltipSaysWhatTheTaskIs) {
  results::Trace t = sample();
  t.events[1].collective = strategies::CollectiveKind::kAllReduce;
  t.events[1].group = {1, 3};
  t.events[1].bytes = 2.5e9;
  t.events[1].layer = 4;
  const TimelineModel m(std::move(t));
  const std::string s = m.describe(1);
  EXPECT_NE(s.find("rank 1, task 0"), std::string::npos) << s;
  EXPECT_NE(s.find("category dp"), std::string::npos) << s;
  EXPECT_NE(s.find("layer 4"), std::string::npos) << s;
  EXPECT_NE(s.find("over 2 ranks"), std::string::npos) << s;
  EXPECT_NE(s.find("duration 3.000 s"), std::string::npos) << s;
  EXPECT_NE(s.find("2.5 GB"), std::string::npos) << s;
}

TEST(TimelineModel, CategoriesFollowPassAndPurpose) {
  EXPECT_EQ(category_of(task(0, Stream::kCompute, 0, 1, TaskKind::kCompute, Phase::kRecompute)),
            Category::kRecompute);
  EXPECT_EQ(category_of(task(0, Stream::kCompute, 0, 1, TaskKind::kCompute, Phase::kStep)),
            Category::kOptimizer);
  EXPECT_EQ(category_of(task(0, Stream::kTp, 0, 1, TaskKind::kCollective, Phase::kForward,
                             Purpose::kTp)),
            Category::kTp);
  EXPECT_EQ(category_of(task(0, Stream::kDp, 0, 1, TaskKind::kCollective, Phase::kNone,
                             Purpose::kZero)),
            Category::kZero);
  EXPECT_EQ(category_of(task(0, Stream::kPp, 0, 1, TaskKind::kSend)), Category::kPp);
  EXPECT_STREQ(category_name(Category::kZero), "ZeRO");
}

}  // namespace
}  // namespace strata::gui
