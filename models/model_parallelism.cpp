#include "models/model_parallelism.h"

#include "parallel/communicator.h"

namespace tessera {

int ModelParallelism::tp_size() const { return tp ? tp->size() : 1; }
int ModelParallelism::tp_rank() const { return tp ? tp->rank() : 0; }

}  // namespace tessera
