// Fail-fast agreement of a multi-rank launch (see world_agreement.h).
#include "launcher/world_agreement.h"

#include <fmt/format.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "parallel/mpi_check.h"

namespace tessera {

namespace {

// One identity as int64 words: rank, world size, Slurm local id (-1: none), recipe loaded, recipe
// hash, then the node name's bytes (zero-padded).
constexpr int kHeaderWords = 5;
constexpr int kNodeWords = 8;
constexpr int kWords = kHeaderWords + kNodeWords;

std::string where(const RankIdentity& r) { return fmt::format("rank {} (node {})", r.rank, r.node); }

std::optional<int> env_int(const char* name) {
  const char* text = std::getenv(name);
  if (!text || !*text) return std::nullopt;
  return std::atoi(text);
}

std::vector<int64_t> pack(const RankIdentity& self) {
  std::vector<int64_t> words(kWords, 0);
  words[0] = self.rank;
  words[1] = self.world_size;
  words[2] = self.slurm_local_id.value_or(-1);
  words[3] = self.recipe_hash.has_value();
  words[4] = static_cast<int64_t>(self.recipe_hash.value_or(0));
  std::memcpy(&words[kHeaderWords], self.node.data(), std::min<size_t>(self.node.size(), kNodeWords * 8 - 1));
  return words;
}

RankIdentity unpack(const int64_t* words) {
  RankIdentity r;
  r.rank = int(words[0]);
  r.world_size = int(words[1]);
  if (words[2] >= 0) r.slurm_local_id = int(words[2]);
  if (words[3]) r.recipe_hash = static_cast<uint64_t>(words[4]);
  char node[kNodeWords * 8] = {};
  std::memcpy(node, &words[kHeaderWords], sizeof(node) - 1);
  r.node = node;
  return r;
}

}  // namespace

uint64_t recipe_hash(const std::string& resolved_yaml) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : resolved_yaml) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

RankIdentity this_rank_identity(const std::optional<std::string>& resolved_recipe_yaml) {
  RankIdentity self;
  TS_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &self.rank));
  TS_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &self.world_size));
  if (std::getenv("SLURM_STEP_NUM_TASKS")) self.slurm_local_id = env_int("SLURM_LOCALID");
  char host[HOST_NAME_MAX + 1] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) std::strcpy(host, "unknown-host");
  self.node = host;
  if (resolved_recipe_yaml) self.recipe_hash = recipe_hash(*resolved_recipe_yaml);
  return self;
}

void check_slurm_step(const RankIdentity& self) {
  std::optional<int> tasks = env_int("SLURM_STEP_NUM_TASKS");
  std::optional<int> procid = env_int("SLURM_PROCID");
  if (!tasks || !procid) return;  // not a task of an srun step
  TS_CHECK(*tasks == self.world_size, "Slurm task ", *procid, " (node ", self.node, ") started as one of ", *tasks,
           " tasks (SLURM_STEP_NUM_TASKS) but MPI connected ", self.world_size,
           " rank(s): each node would form its own world; launch with `srun --mpi=pmix` and an MPI built with PMIx "
           "(`srun --mpi=list` shows the plugins)");
  TS_CHECK(*procid == self.rank, "Slurm task ", *procid, " (node ", self.node, ") is MPI rank ", self.rank,
           ": Slurm and MPI disagree on rank order; launch with `srun --mpi=pmix`");
}

int node_local_rank(const std::vector<RankIdentity>& ranks, int rank) {
  int place = 0;
  for (int i = 0; i < rank; ++i) place += ranks[i].node == ranks[rank].node;
  return place;
}

std::string world_disagreement(const std::vector<RankIdentity>& ranks) {
  const int world = int(ranks.size());
  for (int i = 0; i < world; ++i) {
    const RankIdentity& r = ranks[i];
    if (r.world_size != world || r.rank != i)
      return fmt::format("{} sees itself as rank {} of {} but the exchange gathered {} ranks: the launch mixed worlds",
                         where(r), r.rank, r.world_size, world);
  }
  const RankIdentity* reference = nullptr;
  for (const RankIdentity& r : ranks) {
    if (!r.recipe_hash) continue;
    if (!reference) reference = &r;
    if (*r.recipe_hash != *reference->recipe_hash)
      return fmt::format(
          "{} resolved a different recipe than {} (hash {:016x} vs {:016x}): give every rank the same "
          "recipe file and the same overrides",
          where(r), where(*reference), *r.recipe_hash, *reference->recipe_hash);
  }
  for (const RankIdentity& r : ranks) {
    int place = node_local_rank(ranks, r.rank);
    if (r.slurm_local_id && *r.slurm_local_id != place)
      return fmt::format(
          "{} is Slurm's local task {} (SLURM_LOCALID) but rank {} of its node's ranks: Slurm and MPI "
          "disagree on placement (two nodes with one host name?); launch with `srun --mpi=pmix`",
          where(r), *r.slurm_local_id, place);
  }
  return "";
}

WorldAgreement agree_on_world(const RankIdentity& self, std::chrono::milliseconds timeout) {
  // MPI_COMM_WORLD itself: duplicating it (a Communicator) would be a collective without a timeout.
  std::vector<int64_t> mine = pack(self);
  std::vector<int64_t> all(size_t(self.world_size) * kWords);
  MPI_Request request = MPI_REQUEST_NULL;
  TS_MPI_CHECK(
      MPI_Iallgather(mine.data(), kWords, MPI_INT64_T, all.data(), kWords, MPI_INT64_T, MPI_COMM_WORLD, &request));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int done = 0;;) {
    TS_MPI_CHECK(MPI_Test(&request, &done, MPI_STATUS_IGNORE));
    if (done) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      // The exchange stays posted (its buffers are leaked on purpose): the caller exits.
      new std::vector<int64_t>(std::move(all));
      new std::vector<int64_t>(std::move(mine));
      throw WorldUnreachable(fmt::format(
          "{} of {}: could not reach the other ranks within {} s (the exchange of rank identities did not complete): "
          "check that every node started (srun --mpi=pmix, same executable) and that the nodes can reach each other",
          where(self), self.world_size, timeout.count() / 1000.0));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::vector<RankIdentity> ranks;
  for (int i = 0; i < self.world_size; ++i) ranks.push_back(unpack(all.data() + int64_t(i) * kWords));
  WorldAgreement agreement{world_disagreement(ranks), 0, 0};
  if (!agreement.disagreement.empty()) return agreement;
  agreement.local_rank = node_local_rank(ranks, self.rank);
  for (const RankIdentity& r : ranks) agreement.local_size += r.node == self.node;
  return agreement;
}

}  // namespace tessera
