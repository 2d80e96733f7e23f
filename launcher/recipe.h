// A recipe: the YAML file a run is launched from, plus `section.key=value` overrides from the
// command line, validated against launcher/config_schema before any work starts. Errors name
// the file and line, the key, what was expected and (for unknown keys) the closest known key.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace tessera {

struct RecipeValue {
  std::string text;              // scalar as written, or a list's items joined by '\n'
  std::vector<std::string> items;  // for lists
  std::string origin;            // "recipe.yaml:12", "command line", or "default"
};

class Recipe {
 public:
  // Parses and validates; throws tessera::Error with a one-line reason.
  static Recipe load(const std::string& path, const std::vector<std::string>& overrides = {});
  static Recipe parse(const std::string& yaml_text, const std::string& origin_name,
                      const std::vector<std::string>& overrides = {});

  bool has(const std::string& path) const;  // set in the file, on the command line or by default
  int64_t get_int(const std::string& path) const;
  double get_float(const std::string& path) const;
  bool get_bool(const std::string& path) const;
  std::string get_string(const std::string& path) const;
  std::vector<std::string> get_list(const std::string& path) const;
  // Where a key's value came from ("recipe.yaml:12"), for error messages of later checks.
  std::string origin(const std::string& path) const;
  // Every key with its value, as YAML grouped by section: printed at start, saved with checkpoints.
  std::string resolved_yaml() const;

 private:
  std::map<std::string, RecipeValue> values_;
};

// Closest candidate by edit distance, or "" when none is close enough to suggest.
std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace tessera
