// Loads a GGUF file in llama.cpp itself (node-llama-cpp 3.22.1's prebuilt CPU libraries,
// installed by scripts/fetch_llama_cpp.sh) and prints, per prompt, llama.cpp's own tokenization
// of the prompt text, the raw logits after the prompt's given token ids (last position), and
// the ids greedy decoding (argmax of llama.cpp's logits) continues them with. One model load
// per process: llama.cpp aborts the process on some malformed files.
//   node gguf_llama_cpp.mjs LLAMA_CPP_DIR MODEL.gguf REQUEST.json
// REQUEST.json: {"new_tokens": N, "vocab_size": V, "kv_cache_type": "F32" | "F16",
//                "prompts": [{"text": "...", "ids": [int, ...]}, ...]}
// Prints one JSON object: {"prompts": [{"tokenized": [...], "logits": [V floats], "generated": [...]}]}.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {pathToFileURL} from "node:url";

const [llamaCppDir, modelPath, requestPath] = process.argv.slice(2);
if (!requestPath) {
  console.error("usage: node gguf_llama_cpp.mjs LLAMA_CPP_DIR MODEL.gguf REQUEST.json");
  process.exit(2);
}
const request = JSON.parse(readFileSync(requestPath, "utf8"));
const {getLlama, LlamaLogLevel} = await import(
    pathToFileURL(join(llamaCppDir, "node_modules/node-llama-cpp/dist/index.js")).href);

const llama = await getLlama({gpu: false, build: "never", usePrebuiltBinaries: true, logLevel: LlamaLogLevel.error});
const model = await llama.loadModel({modelPath});
const vocabSize = request.vocab_size;
const context = await model.createContext({
  contextSize: 256,
  batchSize: 256,
  sequences: 1,
  flashAttention: false,
  // One thread: these models are tiny, and ggml's worker threads spin-wait between ops, which on
  // a loaded machine (ctest -j, shared cores) turned a 1 s run into 30 s. Logits are bitwise the
  // same for any thread count (threads split rows, not sums).
  threads: 1,
  experimentalKvCacheKeyType: request.kv_cache_type,
  experimentalKvCacheValueType: request.kv_cache_type,
});
const sequence = context.getSequence();

// The logits llama.cpp computes after the last of `ids` (all earlier ids evaluated without output).
async function nextLogits(ids) {
  const input = ids.map((id, i) => (i + 1 < ids.length ? id : [id, {generateNext: {logits: true}}]));
  const output = await sequence.controlledEvaluate(input);
  const logits = new Array(vocabSize).fill(null);
  for (const [token, value] of output[ids.length - 1].next.logits) logits[token] = value;
  return logits;
}

function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; ++i) if (values[i] > values[best]) best = i;
  return best;
}

const results = [];
for (const prompt of request.prompts) {
  await sequence.clearHistory();
  const tokenized = Array.from(model.tokenize(prompt.text, false));
  let logits = await nextLogits(prompt.ids);
  const first = logits;
  const generated = [];
  for (let i = 0; i < request.new_tokens; ++i) {
    generated.push(argmax(logits));
    if (i + 1 < request.new_tokens) logits = await nextLogits([generated.at(-1)]);
  }
  results.push({tokenized, logits: first, generated});
}
process.stdout.write(JSON.stringify({prompts: results}) + "\n");
await context.dispose();
await model.dispose();
await llama.dispose();
