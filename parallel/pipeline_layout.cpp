// Pipeline layout: layout-string parsing, uneven and even splits (see pipeline_layout.h).
#include "parallel/pipeline_layout.h"

#include <cctype>
#include <sstream>

#include "core/check.h"

namespace tessera {

namespace {

constexpr const char* kLayoutKey = "pipeline_model_parallel_layout";
constexpr const char* kFirstKey = "decoder_first_pipeline_num_layers";
constexpr const char* kLastKey = "decoder_last_pipeline_num_layers";
// A layout string never needs more symbols than this; a bigger expansion is a typo (t*100000000).
constexpr size_t kMaxExpandedSymbols = size_t{1} << 24;

// Recursive-descent expansion of `x*n` and `(...)*n` into a flat string of E, t, L and '|'.
class LayoutExpander {
 public:
  explicit LayoutExpander(const std::string& text) : text_(text) {}

  std::string expand() {
    std::string out = sequence();
    TS_CHECK(pos_ == text_.size(), kLayoutKey, " \"", text_, "\": unmatched ')' at position ", pos_);
    return out;
  }

 private:
  std::string sequence() {
    std::string out;
    while (pos_ < text_.size() && text_[pos_] != ')') {
      char c = text_[pos_];
      std::string item;
      if (c == ',') {  // cosmetic
        ++pos_;
        continue;
      }
      if (c == '(') {
        size_t open = pos_++;
        item = sequence();
        TS_CHECK(pos_ < text_.size(), kLayoutKey, " \"", text_, "\": '(' at position ", open, " is never closed");
        ++pos_;  // ')'
      } else {
        TS_CHECK(c == 'E' || c == 't' || c == 'L' || c == '|', kLayoutKey, " \"", text_, "\": unknown symbol '", c,
                 "' at position ", pos_, (c == 'm' ? " (MTP layers are not supported)" : ""),
                 "; use E (embedding), t (transformer layer), L (loss), | (stage separator), x*n, (...)*n");
        item = std::string(1, c);
        ++pos_;
      }
      out += repeated(item);
      TS_CHECK(out.size() <= kMaxExpandedSymbols, kLayoutKey, " \"", text_, "\" expands to more than ",
               kMaxExpandedSymbols, " symbols");
    }
    return out;
  }

  // `item` followed by an optional `*n`.
  std::string repeated(const std::string& item) {
    if (pos_ >= text_.size() || text_[pos_] != '*') return item;
    size_t star = pos_++;
    size_t digits = pos_;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) ++pos_;
    TS_CHECK(pos_ > digits && pos_ - digits <= 9, kLayoutKey, " \"", text_, "\": '*' at position ", star,
             " must be followed by a repeat count (e.g. t*4)");
    size_t count = std::stoul(text_.substr(digits, pos_ - digits));
    TS_CHECK(item.empty() || count <= kMaxExpandedSymbols / item.size(), kLayoutKey, " \"", text_,
             "\" expands to more than ", kMaxExpandedSymbols, " symbols");
    std::string out;
    out.reserve(item.size() * count);
    for (size_t i = 0; i < count; ++i) out += item;
    return out;
  }

  const std::string& text_;
  size_t pos_ = 0;
};

std::string layer_range(const std::vector<int64_t>& layers) {
  if (layers.empty()) return "no layers";
  if (layers.size() == 1) return detail::concat("layer ", layers.front());
  return detail::concat("layers ", layers.front(), "-", layers.back());
}

// Per-stage layer counts of an even or uneven (first/last) split, before dividing over chunks.
std::vector<int64_t> stage_layer_counts(const PipelineLayoutOptions& o, int vpp) {
  const int pp = o.pp;
  const auto& first = o.decoder_first_pipeline_num_layers;
  const auto& last = o.decoder_last_pipeline_num_layers;
  std::vector<int64_t> counts(pp, 0);
  if (!first && !last) {
    TS_CHECK(o.num_layers % (int64_t{pp} * vpp) == 0, "num_layers ", o.num_layers,
             " is not divisible by pipeline_model_parallel_size ", pp, " x virtual_pipeline_model_parallel_size ", vpp,
             "; set ", kFirstKey, " / ", kLastKey, " or ", kLayoutKey, " for an uneven split");
    for (auto& c : counts) c = o.num_layers / pp;
    return counts;
  }
  TS_CHECK(pp >= 2, kFirstKey, " / ", kLastKey, " need pipeline_model_parallel_size >= 2, got ", pp);
  int middle_stages = pp;
  int64_t middle_layers = o.num_layers;
  for (const auto* edge : {&first, &last}) {
    const char* key = edge == &first ? kFirstKey : kLastKey;
    if (!*edge) continue;
    TS_CHECK(**edge >= 1, key, " must be >= 1, got ", **edge);
    TS_CHECK(**edge % vpp == 0, key, " ", **edge, " is not divisible by virtual_pipeline_model_parallel_size ", vpp,
             " (each of the stage's chunks gets an equal share)");
    --middle_stages;
    middle_layers -= **edge;
  }
  TS_CHECK(middle_layers >= 0, kFirstKey, " + ", kLastKey, " = ", o.num_layers - middle_layers, " exceed num_layers ",
           o.num_layers);
  TS_CHECK((middle_stages == 0) == (middle_layers == 0), "num_layers ", o.num_layers, " minus ", kFirstKey, " / ",
           kLastKey, " leaves ", middle_layers, " layers for ", middle_stages,
           " middle stages; every stage needs layers and every layer a stage");
  if (middle_stages > 0) {
    TS_CHECK(middle_layers % (int64_t{middle_stages} * vpp) == 0, "the ", middle_layers, " layers left by ", kFirstKey,
             " / ", kLastKey, " do not divide evenly over ", middle_stages, " middle stages x ", vpp,
             " chunks; change the edge counts or use ", kLayoutKey);
  }
  for (int s = 0; s < pp; ++s) counts[s] = middle_stages > 0 ? middle_layers / middle_stages : 0;
  if (first) counts[0] = *first;
  if (last) counts[pp - 1] = *last;
  return counts;
}

}  // namespace

std::vector<int64_t> parse_pipeline_layout_string(const std::string& layout) {
  TS_CHECK(!layout.empty(), kLayoutKey, " is empty");
  std::string flat = LayoutExpander(layout).expand();
  std::vector<int64_t> counts{0};
  size_t embeddings = 0, losses = 0;
  for (size_t i = 0; i < flat.size(); ++i) {
    char c = flat[i];
    if (c == '|') {
      counts.push_back(0);
    } else if (c == 't') {
      ++counts.back();
    } else if (c == 'E') {
      ++embeddings;
      TS_CHECK(i == 0, kLayoutKey, " \"", layout, "\": E (embedding) must be the first symbol of the first stage");
    } else {  // 'L'
      ++losses;
      TS_CHECK(i + 1 == flat.size(), kLayoutKey, " \"", layout,
               "\": L (loss) must be the last symbol of the last stage");
    }
  }
  TS_CHECK(embeddings == 1 && losses == 1, kLayoutKey, " \"", layout,
           "\" must contain exactly one E (first) and one L (last), got ", embeddings, " E and ", losses, " L");
  return counts;
}

PipelineLayout::PipelineLayout(const PipelineLayoutOptions& o) : pp_(o.pp), num_layers_(o.num_layers) {
  TS_CHECK(o.num_layers >= 1, "num_layers must be >= 1, got ", o.num_layers);
  TS_CHECK(o.pp >= 1, "pipeline_model_parallel_size must be >= 1, got ", o.pp);
  TS_CHECK(!o.vpp || *o.vpp >= 1, "virtual_pipeline_model_parallel_size must be >= 1, got ", o.vpp.value_or(0));

  // Layer counts per virtual stage, [chunk * pp + stage].
  std::vector<int64_t> counts;
  if (!o.pipeline_model_parallel_layout.empty()) {
    TS_CHECK(!o.decoder_first_pipeline_num_layers && !o.decoder_last_pipeline_num_layers, "set either ", kLayoutKey,
             " or ", kFirstKey, " / ", kLastKey, ", not both");
    counts = parse_pipeline_layout_string(o.pipeline_model_parallel_layout);
    TS_CHECK(counts.size() % o.pp == 0, kLayoutKey, " \"", o.pipeline_model_parallel_layout, "\" has ", counts.size(),
             " stages ('|'-separated), not a multiple of pipeline_model_parallel_size ", o.pp);
    vpp_ = static_cast<int>(counts.size() / o.pp);
    TS_CHECK(!o.vpp || *o.vpp == vpp_, kLayoutKey, " \"", o.pipeline_model_parallel_layout, "\" has ", counts.size(),
             " stages = pipeline_model_parallel_size ", o.pp, " x ", vpp_,
             " chunks, but virtual_pipeline_model_parallel_size is ", o.vpp.value_or(0),
             "; drop one or make them agree");
    int64_t placed = 0;
    for (int64_t c : counts) placed += c;
    TS_CHECK(placed == o.num_layers, kLayoutKey, " \"", o.pipeline_model_parallel_layout, "\" places ", placed,
             " transformer layers (t) but num_layers is ", o.num_layers, "; every layer must be placed exactly once");
  } else {
    vpp_ = o.vpp.value_or(1);
    std::vector<int64_t> per_stage = stage_layer_counts(o, vpp_);
    counts.assign(size_t(pp_) * vpp_, 0);
    for (int chunk = 0; chunk < vpp_; ++chunk) {
      for (int stage = 0; stage < pp_; ++stage) counts[size_t(chunk) * pp_ + stage] = per_stage[stage] / vpp_;
    }
  }
  TS_CHECK(vpp_ == 1 || pp_ >= 2, "virtual_pipeline_model_parallel_size ", vpp_,
           " needs pipeline_model_parallel_size >= 2 (interleaving a single stage does nothing)");

  layers_.resize(counts.size());
  int64_t next = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    for (int64_t i = 0; i < counts[k]; ++i) layers_[k].push_back(next++);
  }
}

const std::vector<int64_t>& PipelineLayout::layers(int stage, int chunk) const {
  TS_CHECK(stage >= 0 && stage < pp_ && chunk >= 0 && chunk < vpp_, "pipeline layout: (stage ", stage, ", chunk ",
           chunk, ") outside pp ", pp_, " x vpp ", vpp_);
  return layers_[size_t(chunk) * pp_ + stage];
}

StageChunk PipelineLayout::location(int64_t layer) const {
  TS_CHECK(layer >= 0 && layer < num_layers_, "pipeline layout: layer ", layer, " outside the model's ", num_layers_,
           " layers");
  for (size_t k = 0; k < layers_.size(); ++k) {
    if (!layers_[k].empty() && layer <= layers_[k].back()) {
      return {static_cast<int>(k % pp_), static_cast<int>(k / pp_)};
    }
  }
  TS_CHECK(false, "pipeline layout: layer ", layer, " was not placed (internal error)");
  return {};
}

std::string PipelineLayout::describe() const {
  std::ostringstream os;
  for (int stage = 0; stage < pp_; ++stage) {
    os << "stage " << stage << ":";
    for (int chunk = 0; chunk < vpp_; ++chunk) {
      os << (chunk ? " |" : "") << " chunk " << chunk << " ";
      if (embedding() == StageChunk{stage, chunk}) os << "E + ";
      os << layer_range(layers(stage, chunk));
      if (head() == StageChunk{stage, chunk}) os << " + L";
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace tessera
