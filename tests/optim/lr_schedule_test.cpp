// The learning-rate schedule against values worked out by hand from Megatron's formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "core/check.h"
#include "optim/lr_schedule.h"

namespace tessera {
namespace {

LrScheduleOptions options(LrDecayStyle style) {
  LrScheduleOptions o;
  o.peak_lr = 1.0;
  o.min_lr = 0.1;
  o.warmup_steps = 10;
  o.decay_steps = 110;
  o.wsd_decay_steps = 20;
  o.style = style;
  return o;
}

TEST(LrSchedule, WarmsUpLinearlyFromZero) {
  LrSchedule s(options(LrDecayStyle::Cosine));
  EXPECT_DOUBLE_EQ(s.at(1), 0.1);
  EXPECT_DOUBLE_EQ(s.at(5), 0.5);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
}

TEST(LrSchedule, DecayStylesHitTheirHandComputedValues) {
  // Halfway through decay (step 60): cosine and linear are both at the midpoint 0.55.
  EXPECT_NEAR(LrSchedule(options(LrDecayStyle::Cosine)).at(60), 0.55, 1e-12);
  EXPECT_NEAR(LrSchedule(options(LrDecayStyle::Linear)).at(60), 0.55, 1e-12);
  // A quarter of the way (step 35): cosine 0.1 + 0.9 * 0.5 (1 + cos(pi/4)); linear 0.1 + 0.9 * 0.75.
  EXPECT_NEAR(LrSchedule(options(LrDecayStyle::Cosine)).at(35), 0.1 + 0.45 * (1 + std::cos(std::numbers::pi / 4)),
              1e-12);
  EXPECT_NEAR(LrSchedule(options(LrDecayStyle::Linear)).at(35), 0.775, 1e-12);
  EXPECT_DOUBLE_EQ(LrSchedule(options(LrDecayStyle::Constant)).at(100), 1.0);
  // WSD: flat until step 90, then linear to min at 110.
  LrSchedule wsd(options(LrDecayStyle::WarmupStableDecay));
  EXPECT_DOUBLE_EQ(wsd.at(90), 1.0);
  EXPECT_NEAR(wsd.at(100), 0.55, 1e-12);
  for (LrDecayStyle style : {LrDecayStyle::Cosine, LrDecayStyle::Linear, LrDecayStyle::WarmupStableDecay}) {
    EXPECT_DOUBLE_EQ(LrSchedule(options(style)).at(110), 0.1);
    EXPECT_DOUBLE_EQ(LrSchedule(options(style)).at(5000), 0.1);
  }
}

TEST(LrSchedule, RejectsInconsistentSettings) {
  LrScheduleOptions o = options(LrDecayStyle::Cosine);
  o.decay_steps = 10;
  EXPECT_THROW(LrSchedule{o}, Error);
  o = options(LrDecayStyle::WarmupStableDecay);
  o.wsd_decay_steps = 0;
  EXPECT_THROW(LrSchedule{o}, Error);
  EXPECT_THROW(lr_decay_style_from_name("cosin"), Error);
}

}  // namespace
}  // namespace tessera
