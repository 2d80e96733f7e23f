#include "launcher/config_schema.h"

namespace tessera {

const std::vector<std::string>& config_sections() {
  static const std::vector<std::string> sections = {"model", "parallel", "data", "optimizer", "scheduler",
                                                     "train", "checkpoint", "logging",
                                                     "dpo", "reward_model", "lora", "grpo",
                                                     "ppo"};
  return sections;
}

namespace {
using K = KeyType;
}  // namespace

const std::vector<KeySpec>& config_schema() {
  static const std::vector<KeySpec> schema = {
      // model
      {"model", "preset", K::String, "", "base architecture (gpt2-124m, llama3-8b, ...); keys below override it",
       {}, {}, {}, true},
      {"model", "num_layers", K::Int, "", "transformer layers (default: the preset's)", 1},
      {"model", "hidden_size", K::Int, "", "model width C (default: the preset's)", 1},
      {"model", "num_attention_heads", K::Int, "", "query heads H (default: the preset's)", 1},
      {"model", "num_query_groups", K::Int, "", "key/value heads for grouped-query attention", 1},
      {"model", "ffn_hidden_size", K::Int, "", "MLP width (default: the preset's)", 1},
      {"model", "max_position_embeddings", K::Int, "", "longest sequence the model supports", 1},
      {"model", "make_vocab_size_divisible_by", K::Int, "128", "pad the embedding table to a multiple of this", 1},
      {"model", "hidden_dropout", K::Float, "0.0", "dropout on each sublayer's output", 0.0, 0.99},
      {"model", "init_method_std", K::Float, "0.02", "std of the normal init (residual outputs scaled by 1/sqrt(2L))",
       0.0},
      {"model", "rotary_base", K::Float, "", "rope theta (rope models)", 1.0},
      {"model", "untie_embeddings_and_output_weights", K::Bool, "", "separate output layer (default: the preset's)"},
      {"model", "recompute_granularity", K::String, "none", "activation recomputation", {}, {}, {"none", "full"}},
      // parallel
      {"parallel", "tensor_model_parallel_size", K::Int, "1", "tensor-parallel ranks", 1},
      {"parallel", "pipeline_model_parallel_size", K::Int, "1", "pipeline stages", 1},
      {"parallel", "virtual_pipeline_model_parallel_size", K::Int, "1", "model chunks per stage (interleaved 1F1B)",
       1},
      {"parallel", "decoder_first_pipeline_num_layers", K::Int, "",
       "transformer layers on the first pipeline stage (the other stages share the rest evenly)", 0},
      {"parallel", "decoder_last_pipeline_num_layers", K::Int, "",
       "transformer layers on the last pipeline stage (the other stages share the rest evenly)", 0},
      {"parallel", "pipeline_model_parallel_layout", K::String, "",
       "Megatron-core layout string, virtual stages separated by '|' (E embedding, t layer, L loss), e.g. "
       "\"Et*3|t*4|t*4|t*3L\"; empty: split by the sizes above"},
      {"parallel", "pipeline_schedule", K::String, "auto",
       "pipeline schedule: auto (1f1b, interleaved_1f1b when virtual_pipeline_model_parallel_size > 1), gpipe, 1f1b "
       "or interleaved_1f1b", {}, {}, {"auto", "gpipe", "1f1b", "interleaved_1f1b"}},
      {"parallel", "context_parallel_size", K::Int, "1", "context-parallel ranks", 1},
      {"parallel", "sequence_parallel", K::Bool, "false", "shard norms/dropout along the sequence (needs TP > 1)"},
      {"parallel", "zero_stage", K::Int, "0",
       "ZeRO stage: 1 shards the optimizer state over data-parallel ranks, 2 also the gradients, 3 also the "
       "parameters (FSDP: each transformer layer gathered just in time)",
       0.0, 3.0},
      {"parallel", "fsdp", K::Bool, "false", "FSDP: the same as zero_stage 3"},
      {"parallel", "fsdp_prefetch", K::Int, "1",
       "zero_stage 3: units (transformer layers) all-gathered ahead of use in forward and backward; more overlaps "
       "more communication and holds more gathered parameters", 0},
      {"parallel", "ddp_bucket_size_mb", K::Float, "40",
       "data-parallel gradient all-reduce bucket size in MiB of f32 gradients (smaller buckets start reducing "
       "earlier in backward, larger ones make fewer calls)", 0.0},
      {"parallel", "grad_reduce_in_bf16", K::Bool, "false",
       "data-parallel gradients (buffer, ZeRO shards, reductions) in bf16 instead of f32: half the gradient memory "
       "(and NCCL traffic), less precise accumulation (Megatron's --grad-reduce-in-bf16; needs train.precision bf16)"},
      {"parallel", "distributed_timeout_minutes", K::Float, "10",
       "a collective unfinished after this long is a hang: the watchdog names it, dumps every rank's flight "
       "recorder into RUN_DIR/flight_recorder (read it with `tessera doctor hang RUN_DIR`) and ends the job", 0.0},
      // data
      {"data", "data_path", K::StringList, "",
       "indexed datasets: [prefix] or [weight, prefix, weight, prefix, ...] (needed unless data.sft_train_path)"},
      {"data", "sft_train_path", K::StringList, "",
       "SFT: chat JSONL files ({\"messages\": [...]} or {\"prompt\", \"response\"}) instead of data_path"},
      {"data", "sft_valid_path", K::StringList, "", "SFT: validation chat JSONL files"},
      {"data", "chat_template", K::String, "gpt2", "SFT: chat template family", {}, {}, {"gpt2", "llama3"}},
      {"data", "sft_packing", K::String, "first_fit", "SFT: how conversations fill rows", {}, {}, {"first_fit", "sequential"}},
      {"data", "sft_overflow", K::String, "skip", "SFT: a conversation longer than seq_length", {}, {}, {"skip", "truncate"}},
      {"data", "split", K::String, "969,30,1", "train,valid,test proportions"},
      {"data", "tokenizer_type", K::String, "GPT2BPETokenizer", "tokenizer family", {}, {},
       {"GPT2BPETokenizer", "HuggingFaceTokenizer"}},
      {"data", "vocab_file", K::String, "", "encoder.json / vocab.json (GPT2BPETokenizer)"},
      {"data", "merge_file", K::String, "", "vocab.bpe / merges.txt (GPT2BPETokenizer)"},
      {"data", "tokenizer_model", K::String, "", "tokenizer.json (HuggingFaceTokenizer)"},
      {"data", "seq_length", K::Int, "1024", "tokens per sample", 1},
      {"data", "num_workers", K::Int, "2", "background loader threads", 0},
      // optimizer
      {"optimizer", "optimizer", K::String, "adam", "optimizer (AdamW with decoupled weight decay)", {}, {}, {"adam"}},
      {"optimizer", "lr", K::Float, "3e-4", "peak learning rate", 0.0},
      {"optimizer", "min_lr", K::Float, "0.0", "learning rate at the end of decay", 0.0},
      {"optimizer", "weight_decay", K::Float, "0.1", "decoupled weight decay (not on norms and biases)", 0.0},
      {"optimizer", "adam_beta1", K::Float, "0.9", "Adam beta1", 0.0, 0.999999},
      {"optimizer", "adam_beta2", K::Float, "0.95", "Adam beta2", 0.0, 0.999999},
      {"optimizer", "adam_eps", K::Float, "1e-8", "Adam epsilon", 0.0},
      {"optimizer", "clip_grad", K::Float, "1.0", "clip the global gradient norm to this (0 = off)", 0.0},
      // scheduler
      {"scheduler", "lr_decay_style", K::String, "cosine", "decay after warmup", {}, {},
       {"cosine", "linear", "constant", "WSD"}},
      {"scheduler", "lr_warmup_iters", K::Int, "0", "linear warmup steps", 0},
      {"scheduler", "lr_decay_iters", K::Int, "", "steps to decay over (default: train_iters)", 1},
      {"scheduler", "lr_wsd_decay_iters", K::Int, "", "WSD: length of the final decay phase", 1},
      // train
      {"train", "micro_batch_size", K::Int, "", "samples per micro-batch per data-parallel rank", 1, {}, {}, true},
      {"train", "global_batch_size", K::Int, "", "samples per optimizer step over all ranks", 1, {}, {}, true},
      {"train", "train_iters", K::Int, "", "optimizer steps", 1, {}, {}, true},
      {"train", "eval_interval", K::Int, "1000", "evaluate on the validation split every N steps", 1},
      {"train", "eval_iters", K::Int, "10", "validation batches per evaluation", 0},
      {"train", "seed", K::Int, "1234", "seed for init, dropout and data order", 0},
      {"train", "precision", K::String, "bf16", "bf16 (f32 master weights), fp16 (loss scaling) or fp32", {}, {},
       {"bf16", "fp16", "fp32"}},
      {"train", "device", K::String, "auto", "cuda when a GPU is visible, else cpu", {}, {}, {"auto", "cpu", "cuda"}},
      {"train", "resume", K::String, "auto", "auto (latest valid checkpoint), none, or a checkpoint path"},
      {"train", "cuda_graph", K::Bool, "false", "capture a micro-batch's forward and backward as a CUDA graph after the "
       "first step and replay it (one GPU, no dropout)"},
      {"train", "exit_interval", K::Int, "", "stop (and save) after this many steps of this job, e.g. to fit a "
       "Slurm time limit; the next job resumes", 1},
      // checkpoint
      {"checkpoint", "save", K::String, "", "checkpoint directory (empty: no checkpoints)"},
      {"checkpoint", "save_interval", K::Int, "1000", "save every N steps", 1},
      {"checkpoint", "keep_last", K::Int, "3", "checkpoints to keep", 1},
      {"checkpoint", "async_save", K::Bool, "true",
       "write checkpoints on a background thread while training goes on (the next save waits for it)"},
      // logging
      {"logging", "log_interval", K::Int, "1", "steps between log lines", 1},
      {"logging", "pipeline_trace", K::Bool, "false",
       "pipeline runs: write the first step's schedule as a Chrome trace (RUN_DIR/pipeline_trace.json, open it in "
       "Perfetto) and print its measured bubble fraction"},
      {"logging", "run_dir", K::String, "runs/latest", "metrics (JSONL), resolved config and logs go here"},
      // dpo (`tessera dpo`; launcher/dpo_config.h)
      {"dpo", "init_from", K::String, "",
       "checkpoint the policy starts from (an SFT run's checkpoint directory or file); its frozen reference is a "
       "copy of the same weights"},
      {"dpo", "reference_from", K::String, "", "checkpoint of the frozen reference (default: dpo.init_from)"},
      {"dpo", "train_path", K::StringList, "", "preference pairs JSONL ({\"prompt\" or \"messages\", \"chosen\", "
       "\"rejected\"})"},
      {"dpo", "valid_path", K::StringList, "", "held-out preference pairs JSONL (accuracy and margin at each evaluation)"},
      {"dpo", "loss", K::String, "dpo", "dpo (sigmoid, Rafailov et al.) or ipo (Azar et al.)", {}, {}, {"dpo", "ipo"}},
      {"dpo", "beta", K::Float, "0.1", "strength of the pull towards the reference (KL coefficient)", 0.0},
      {"dpo", "label_smoothing", K::Float, "0.0", "conservative DPO: assumed probability that a pair's label is "
       "flipped (dpo loss only)", 0.0, 0.499999},
      // reward_model (`tessera reward-model`; launcher/reward_model_trainer.h)
      {"reward_model", "init_from", K::String, "",
       "checkpoint the backbone starts from (e.g. an SFT run's); empty: random weights from train.seed"},
      {"reward_model", "train_path", K::StringList, "", "preference pairs JSONL ({\"prompt\" or \"messages\", "
       "\"chosen\", \"rejected\"})"},
      {"reward_model", "valid_path", K::StringList, "", "held-out preference pairs JSONL (accuracy at each evaluation)"},
      // lora (docs/lora.md)
      {"lora", "rank", K::Int, "0",
       "LoRA adapters' inner size (NeMo's dim); > 0 freezes every base parameter and trains only the adapters", 0},
      {"lora", "alpha", K::Float, "32", "the adapters' term is scaled by alpha / rank", 0.0},
      {"lora", "dropout", K::Float, "0.0", "dropout on each adapter's input (training only)", 0.0, 0.99},
      {"lora", "target_modules", K::StringList, "",
       "linear layers of every transformer layer that get an adapter: linear_qkv (fused q/k/v), linear_proj "
       "(attention output), linear_fc1 (MLP in), linear_fc2 (MLP out); default: all four"},
      {"lora", "base", K::String, "",
       "checkpoint folder (iter_NNNNNNN of `tessera train` or `tessera import`) whose weights are the frozen base; "
       "the adapters start fresh (empty: the base initialised from train.seed); tessera dpo / grpo: leave empty "
       "(the base is their init_from)"},
      // grpo (`tessera grpo`; launcher/grpo_config.h, docs/grpo.md)
      {"grpo", "init_from", K::String, "",
       "checkpoint the policy starts from (an SFT run's checkpoint directory or file); the frozen reference is a copy "
       "of the same weights"},
      {"grpo", "prompts_path", K::StringList, "", "chat JSONL whose user questions are the training prompts"},
      {"grpo", "eval_prompts_path", K::StringList, "", "held-out chat JSONL: mean reward and accuracy every "
       "train.eval_interval steps (one sample per prompt)"},
      {"grpo", "eval_prompts", K::Int, "0", "evaluate on the first N held-out prompts (0: all)", 0},
      {"grpo", "group_size", K::Int, "8", "samples per prompt; advantages compare the samples of a prompt", 2},
      {"grpo", "max_new_tokens", K::Int, "16", "longest response", 1},
      {"grpo", "temperature", K::Float, "1.0", "sampling temperature of the rollouts (> 0)", 0.0},
      {"grpo", "top_p", K::Float, "1.0", "nucleus sampling of the rollouts (1 = off)", 0.0, 1.0},
      {"grpo", "top_k", K::Int, "0", "top-k sampling of the rollouts (0 = off)", 0},
      {"grpo", "reward", K::String, "arithmetic", "programmatic reward (posttrain/rewards.h)", {}, {},
       {"arithmetic", "addition", "sorting"}},
      {"grpo", "format_penalty", K::Float, "0.0", "subtracted from the reward of a response that is not just the "
       "answer", 0.0},
      {"grpo", "scale_rewards", K::Bool, "true", "divide by the group's reward std (false: Dr. GRPO's r - mean)"},
      {"grpo", "clip_eps", K::Float, "0.2", "PPO clip range of the probability ratio", 0.0},
      {"grpo", "kl_coef", K::Float, "0.04", "beta: weight of the k3 KL to the reference (0: no reference)", 0.0},
      {"grpo", "epochs", K::Int, "1", "passes over each rollout", 1},
      {"grpo", "num_minibatches", K::Int, "1", "optimizer steps per pass over a rollout", 1},
      // ppo (`tessera ppo`; launcher/ppo_config.h, docs/ppo.md)
      {"ppo", "init_from", K::String, "",
       "checkpoint the actor starts from (an SFT run's checkpoint directory or file); the frozen reference is a copy "
       "of the same weights"},
      {"ppo", "critic_init_from", K::String, "",
       "checkpoint the critic starts from: a reward model's (its head becomes the value head) or an LM's (a fresh "
       "value head); empty: ppo.reward_model, else ppo.init_from"},
      {"ppo", "reward_model", K::String, "", "`tessera reward-model` checkpoint that scores responses (empty: none)"},
      {"ppo", "reward", K::String, "arithmetic",
       "programmatic reward (posttrain/rewards.h), added to the reward model's score; none: the reward model alone",
       {}, {}, {"arithmetic", "addition", "sorting", "none"}},
      {"ppo", "format_penalty", K::Float, "0.0", "subtracted from the programmatic reward of a response that is not "
       "just the answer", 0.0},
      {"ppo", "prompts_path", K::StringList, "", "chat JSONL whose user questions are the training prompts"},
      {"ppo", "eval_prompts_path", K::StringList, "", "held-out chat JSONL: greedy mean reward and accuracy every "
       "train.eval_interval steps"},
      {"ppo", "eval_prompts", K::Int, "0", "evaluate on the first N held-out prompts (0: all)", 0},
      {"ppo", "samples_per_prompt", K::Int, "1", "responses sampled per prompt in a rollout", 1},
      {"ppo", "max_new_tokens", K::Int, "16", "longest response", 1},
      {"ppo", "temperature", K::Float, "1.0", "sampling temperature of the rollouts (> 0)", 0.0},
      {"ppo", "top_p", K::Float, "1.0", "nucleus sampling of the rollouts (1 = off)", 0.0, 1.0},
      {"ppo", "top_k", K::Int, "0", "top-k sampling of the rollouts (0 = off)", 0},
      {"ppo", "clip_eps", K::Float, "0.2", "clip range of the policy's probability ratio", 0.0},
      {"ppo", "value_clip", K::Float, "0.2", "the critic's new values stay within old value +- value_clip", 0.0},
      {"ppo", "kl_coef", K::Float, "0.05", "weight of the per-token KL penalty (k1) to the reference in the rewards "
       "(0: no reference)", 0.0},
      {"ppo", "gamma", K::Float, "1.0", "GAE discount", 0.0, 1.0},
      {"ppo", "lam", K::Float, "0.95", "GAE lambda", 0.0, 1.0},
      {"ppo", "whiten_advantages", K::Bool, "true", "advantages to mean 0, variance 1 over the step's tokens"},
      {"ppo", "critic_lr", K::Float, "0.0", "the critic's AdamW learning rate (0: optimizer.lr)", 0.0},
      {"ppo", "epochs", K::Int, "1", "passes over each rollout", 1},
      {"ppo", "num_minibatches", K::Int, "1", "actor and critic steps per pass over a rollout", 1},
  };
  return schema;
}

const KeySpec* find_key(const std::string& path) {
  for (const KeySpec& spec : config_schema())
    if (spec.path() == path) return &spec;
  return nullptr;
}

std::string key_type_name(KeyType type) {
  switch (type) {
    case KeyType::Int: return "an integer";
    case KeyType::Float: return "a number";
    case KeyType::Bool: return "true or false";
    case KeyType::String: return "a string";
    case KeyType::StringList: return "a list";
  }
  return "?";
}

}  // namespace tessera
