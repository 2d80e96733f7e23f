// The recipe schema: every key a recipe may set, by section, with its type, range or
// choices, default and meaning. Key names follow Megatron-LM / NeMo. The recipe loader
// validates against this table; docs/recipes.md is generated from the same help strings.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace tessera {

enum class KeyType { Int, Float, Bool, String, StringList };

struct KeySpec {
  std::string section;
  std::string name;
  KeyType type;
  std::string default_value;  // YAML text; "" with required = true means no default
  std::string help;
  std::optional<double> min = std::nullopt;
  std::optional<double> max = std::nullopt;
  std::vector<std::string> choices = {};
  bool required = false;
  std::string path() const { return section + "." + name; }
};

const std::vector<std::string>& config_sections();
const std::vector<KeySpec>& config_schema();
// The spec of "section.key", or null.
const KeySpec* find_key(const std::string& path);
std::string key_type_name(KeyType type);

}  // namespace tessera
