#include "launcher/recipe.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "launcher/config_schema.h"

namespace tessera {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

std::string suggestion(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best = did_you_mean(word, candidates);
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

std::vector<std::string> keys_of_section(const std::string& section) {
  std::vector<std::string> keys;
  for (const KeySpec& spec : config_schema())
    if (spec.section == section) keys.push_back(spec.name);
  return keys;
}

std::vector<std::string> all_paths() {
  std::vector<std::string> paths;
  for (const KeySpec& spec : config_schema()) paths.push_back(spec.path());
  return paths;
}

// Checks a scalar against its spec; `where` names the place for the message.
void check_scalar(const KeySpec& spec, const std::string& text, const std::string& where) {
  auto fail = [&](const std::string& why) {
    TS_CHECK(false, where, ": ", spec.path(), " = '", text, "' ", why, " (", spec.help, ")");
  };
  switch (spec.type) {
    case KeyType::Int: {
      int64_t v = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (ec != std::errc() || end != text.data() + text.size()) fail("must be " + key_type_name(spec.type));
      if (spec.min && double(v) < *spec.min) fail("must be >= " + std::to_string(int64_t(*spec.min)));
      if (spec.max && double(v) > *spec.max) fail("must be <= " + std::to_string(int64_t(*spec.max)));
      break;
    }
    case KeyType::Float: {
      char* end = nullptr;
      double v = std::strtod(text.c_str(), &end);
      if (text.empty() || *end != '\0' || !std::isfinite(v)) fail("must be " + key_type_name(spec.type));
      if (spec.min && v < *spec.min) fail("must be >= " + std::to_string(*spec.min));
      if (spec.max && v > *spec.max) fail("must be <= " + std::to_string(*spec.max));
      break;
    }
    case KeyType::Bool:
      if (text != "true" && text != "false") fail("must be true or false");
      break;
    case KeyType::String:
      if (!spec.choices.empty() && std::find(spec.choices.begin(), spec.choices.end(), text) == spec.choices.end()) {
        std::string options;
        for (const std::string& c : spec.choices) options += (options.empty() ? "" : ", ") + c;
        fail("is not one of: " + options + suggestion(text, spec.choices));
      }
      break;
    case KeyType::StringList: break;
  }
}

const KeySpec& known_key(const std::string& section, const std::string& key, const std::string& where) {
  const KeySpec* spec = find_key(section + "." + key);
  if (!spec) {
    // A key placed in the wrong section is the commonest slip: say where it belongs.
    std::string elsewhere;
    for (const KeySpec& s : config_schema())
      if (s.name == key) elsewhere = " ('" + key + "' belongs in section '" + s.section + "')";
    TS_CHECK(false, where, ": unknown key '", section, ".", key, "'",
             elsewhere.empty() ? suggestion(key, keys_of_section(section)) : elsewhere);
  }
  return *spec;
}

RecipeValue value_from_node(const KeySpec& spec, const YAML::Node& node, const std::string& where) {
  RecipeValue value;
  value.origin = where;
  if (spec.type == KeyType::StringList) {
    TS_CHECK(node.IsSequence() || node.IsScalar(), where, ": ", spec.path(), " must be a list");
    if (node.IsScalar()) {
      value.items.push_back(node.Scalar());
    } else {
      for (const YAML::Node& item : node) {
        TS_CHECK(item.IsScalar(), where, ": ", spec.path(), " must be a list of scalars");
        value.items.push_back(item.Scalar());
      }
    }
    for (const std::string& item : value.items) value.text += (value.text.empty() ? "" : "\n") + item;
    return value;
  }
  TS_CHECK(node.IsScalar(), where, ": ", spec.path(), " must be ", key_type_name(spec.type), ", got a ",
           node.IsSequence() ? "list" : "mapping");
  value.text = node.Scalar();
  check_scalar(spec, value.text, where);
  return value;
}

}  // namespace

std::string did_you_mean(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_distance = std::max<size_t>(3, word.size() / 3) + 1;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

Recipe Recipe::load(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream file(path);
  TS_CHECK(file.good(), "recipe ", path, " cannot be read (does it exist?)");
  std::stringstream text;
  text << file.rdbuf();
  return parse(text.str(), path, overrides);
}

Recipe Recipe::parse(const std::string& yaml_text, const std::string& origin_name,
                     const std::vector<std::string>& overrides) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    TS_CHECK(false, origin_name, ":", e.mark.line + 1, ": invalid YAML: ", e.msg);
  }
  TS_CHECK(root.IsMap(), origin_name, ": a recipe is a mapping of sections (model, data, train, ...)");
  Recipe recipe;
  for (const auto& section_entry : root) {
    std::string section = section_entry.first.Scalar();
    std::string where = origin_name + ":" + std::to_string(section_entry.first.Mark().line + 1);
    const auto& sections = config_sections();
    TS_CHECK(std::find(sections.begin(), sections.end(), section) != sections.end(), where, ": unknown section '",
             section, "'", suggestion(section, sections));
    TS_CHECK(section_entry.second.IsMap(), where, ": section '", section, "' must be a mapping of keys");
    for (const auto& entry : section_entry.second) {
      std::string key = entry.first.Scalar();
      std::string key_where = origin_name + ":" + std::to_string(entry.first.Mark().line + 1);
      const KeySpec& spec = known_key(section, key, key_where);
      recipe.values_[spec.path()] = value_from_node(spec, entry.second, key_where);
    }
  }
  for (const std::string& override_text : overrides) {
    size_t eq = override_text.find('=');
    size_t dot = override_text.find('.');
    TS_CHECK(eq != std::string::npos && dot != std::string::npos && dot < eq, "command line: override '",
             override_text, "' must look like section.key=value");
    std::string path = override_text.substr(0, eq);
    const KeySpec* spec = find_key(path);
    TS_CHECK(spec, "command line: unknown key '", path, "'", suggestion(path, all_paths()));
    YAML::Node node;
    try {
      node = YAML::Load(override_text.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      TS_CHECK(false, "command line: ", path, ": cannot parse value: ", e.msg);
    }
    recipe.values_[path] = value_from_node(*spec, node.IsNull() ? YAML::Node("") : node, "command line");
  }
  for (const KeySpec& spec : config_schema()) {
    if (recipe.values_.count(spec.path())) continue;
    TS_CHECK(!spec.required, origin_name, ": required key ", spec.path(), " is missing (", spec.help, ")");
    // Strings default to "" (e.g. no checkpoint directory); other types without a default stay
    // unset, so has() tells whether the recipe chose a value (model keys fall back to the preset).
    if (!spec.default_value.empty() || spec.type == KeyType::String)
      recipe.values_[spec.path()] = {spec.default_value, {}, "default"};
  }
  return recipe;
}

bool Recipe::has(const std::string& path) const { return values_.count(path) > 0; }

std::string Recipe::origin(const std::string& path) const {
  auto it = values_.find(path);
  return it == values_.end() ? "unset" : it->second.origin;
}

std::string Recipe::get_string(const std::string& path) const {
  auto it = values_.find(path);
  TS_CHECK(it != values_.end(), "recipe: ", path, " is not set");
  return it->second.text;
}

int64_t Recipe::get_int(const std::string& path) const { return std::stoll(get_string(path)); }
double Recipe::get_float(const std::string& path) const { return std::stod(get_string(path)); }
bool Recipe::get_bool(const std::string& path) const { return get_string(path) == "true"; }

std::vector<std::string> Recipe::get_list(const std::string& path) const {
  auto it = values_.find(path);
  TS_CHECK(it != values_.end(), "recipe: ", path, " is not set");
  return it->second.items.empty() && !it->second.text.empty() ? std::vector<std::string>{it->second.text}
                                                                : it->second.items;
}

std::string Recipe::resolved_yaml() const {
  YAML::Emitter out;
  out << YAML::BeginMap;
  for (const std::string& section : config_sections()) {
    out << YAML::Key << section << YAML::Value << YAML::BeginMap;
    for (const KeySpec& spec : config_schema()) {
      auto it = values_.find(spec.path());
      if (spec.section != section || it == values_.end()) continue;
      out << YAML::Key << spec.name << YAML::Value;
      if (spec.type == KeyType::StringList) {
        out << YAML::Flow << it->second.items;
      } else {
        out << it->second.text;
      }
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace tessera
