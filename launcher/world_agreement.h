// Fail-fast agreement of a multi-rank launch, before any rank builds anything: every rank checks
// that it sees the world the launcher started and that it agrees with the others on it.
//   1. No communication: under an srun step (SLURM_STEP_NUM_TASKS / SLURM_PROCID set), MPI's
//      world size and rank must equal Slurm's. An srun without --mpi=pmix gives every task a
//      singleton MPI world: each node would train alone.
//   2. One all_gather of every rank's identity (rank, world size, node name, Slurm's local task
//      id, the resolved recipe's hash) under a timeout, as the first collective after MPI_Init:
//      a rank that cannot reach the others within it fails with a message naming its node (the
//      caller ends the job), instead of waiting forever.
//   3. The gathered identities must agree: one world size, ranks in order, the same recipe hash on
//      every rank that loaded it, and Slurm's local task ids equal to each rank's place among the
//      ranks of its node. That place is the local rank the caller then checks MPI's against.
// Every message is one line naming the rank and its node, and the fix.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/check.h"

namespace tessera {

struct RankIdentity {
  int rank = 0;
  int world_size = 1;
  std::string node;                     // this host's name (at most 63 characters are exchanged)
  std::optional<int> slurm_local_id;    // SLURM_LOCALID under an srun step
  std::optional<uint64_t> recipe_hash;  // unset when this rank could not load the recipe
};

// This process's identity: rank and world size from MPI (no communication), the host name,
// SLURM_LOCALID, the hash of `resolved_recipe_yaml` (nullopt when the recipe did not load: every
// rank reports its own error later).
RankIdentity this_rank_identity(const std::optional<std::string>& resolved_recipe_yaml);

// FNV-1a 64 of the text: the same recipe and overrides resolve to the same YAML on every rank.
uint64_t recipe_hash(const std::string& resolved_yaml);

// Step 1: throws tessera::Error when an srun step's variables disagree with MPI's world.
void check_slurm_step(const RankIdentity& self);

// Step 3 on the gathered identities (index = rank): "" when they agree, else the reason.
std::string world_disagreement(const std::vector<RankIdentity>& ranks);

// Raised by agree_on_world when the exchange did not complete within the timeout; what() names
// this rank and its node.
class WorldUnreachable : public Error {
 public:
  using Error::Error;
};

// `rank`'s place among the ranks of its node (ranks in order): its expected local rank.
int node_local_rank(const std::vector<RankIdentity>& ranks, int rank);

struct WorldAgreement {
  std::string disagreement;  // "" when the ranks agree (the same on every rank)
  int local_rank = 0;        // this rank's place among the ranks of its node
  int local_size = 1;        // ranks on this node
};

// Steps 2 and 3 over MPI_COMM_WORLD (collective). Throws WorldUnreachable when the others did not answer
// within `timeout` (the exchange is then still posted: the caller must end the process, not carry
// on with `world`).
WorldAgreement agree_on_world(const RankIdentity& self, std::chrono::milliseconds timeout);

}  // namespace tessera
