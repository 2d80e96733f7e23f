// Layout validation and Megatron-ordered process groups (see process_groups.h).
#include "parallel/process_groups.h"

namespace tessera {

void validate_layout(const ParallelLayout& layout, int world_size) {
  TS_CHECK(layout.tp >= 1 && layout.pp >= 1 && layout.dp >= 1 && layout.cp >= 1,
           "parallel layout: every size must be >= 1, got tp ", layout.tp, ", pp ", layout.pp, ", dp ", layout.dp,
           ", cp ", layout.cp);
  TS_CHECK(layout.product() == world_size, "parallel layout: world size ", world_size, " != tp ", layout.tp, " x pp ",
           layout.pp, " x dp ", layout.dp, " x cp ", layout.cp, " = ", layout.product(),
           "; change the sizes or launch ", layout.product(), " ranks");
}

void validate_layout_for_model(const ParallelLayout& layout, int64_t num_heads, int64_t num_kv_heads) {
  TS_CHECK(num_heads % layout.tp == 0, "parallel layout: tp ", layout.tp, " does not divide the model's ", num_heads,
           " attention heads");
  TS_CHECK(num_kv_heads % layout.tp == 0, "parallel layout: tp ", layout.tp, " does not divide the model's ",
           num_kv_heads, " kv heads");
}

int64_t padded_vocab_size(int64_t vocab_size, int tp) {
  TS_CHECK(vocab_size >= 1 && tp >= 1, "padded_vocab_size: vocab_size (", vocab_size, ") and tp (", tp,
           ") must be >= 1");
  int64_t multiple = int64_t{128} * tp;
  return (vocab_size + multiple - 1) / multiple * multiple;
}

ParallelCoords coords_of_rank(const ParallelLayout& layout, int rank) {
  TS_CHECK(rank >= 0 && rank < layout.product(), "coords_of_rank: rank ", rank, " outside the layout's ",
           layout.product(), " ranks");
  ParallelCoords coords;
  coords.tp = rank % layout.tp;
  rank /= layout.tp;
  coords.cp = rank % layout.cp;
  rank /= layout.cp;
  coords.dp = rank % layout.dp;
  coords.pp = rank / layout.dp;
  return coords;
}

int rank_of_coords(const ParallelLayout& layout, const ParallelCoords& c) {
  return c.tp + layout.tp * (c.cp + layout.cp * (c.dp + layout.dp * c.pp));
}

namespace {

// The group of ranks that share every coordinate but `varying`: colour = the lowest rank of
// the group (that coordinate set to 0), key = the varying coordinate, so group rank = coordinate.
std::unique_ptr<Communicator> split_along(const Communicator& world, const ParallelLayout& layout,
                                          const ParallelCoords& coords, int ParallelCoords::*varying,
                                          const char* name) {
  ParallelCoords first = coords;
  first.*varying = 0;
  return world.split(rank_of_coords(layout, first), coords.*varying, name);
}

}  // namespace

ProcessGroups::ProcessGroups(const Communicator& world, const ParallelLayout& layout) : layout_(layout) {
  validate_layout(layout, world.size());
  coords_ = coords_of_rank(layout, world.rank());
  tp_ = split_along(world, layout, coords_, &ParallelCoords::tp, "tp");
  cp_ = split_along(world, layout, coords_, &ParallelCoords::cp, "cp");
  dp_ = split_along(world, layout, coords_, &ParallelCoords::dp, "dp");
  pp_ = split_along(world, layout, coords_, &ParallelCoords::pp, "pp");
  if (layout.pp > 1) {
    // Every rank takes part in the split; middle-stage ranks get a group of their own (colours
    // above every member colour) and drop it.
    const bool member = coords_.pp == 0 || coords_.pp == layout.pp - 1;
    ParallelCoords first = coords_;
    first.pp = 0;
    std::unique_ptr<Communicator> group =
        world.split(member ? rank_of_coords(layout, first) : world.size() + world.rank(), coords_.pp, "embedding");
    if (member) embedding_ = std::move(group);
  }
}

}  // namespace tessera
