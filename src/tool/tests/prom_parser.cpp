// SPDX-License-Identifier: Apache-2.0
#include "prom_parser.hpp"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <set>
#include <stdexcept>

namespace softmig::tool::test {
namespace {

struct ParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':'; }
bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }
bool label_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool label_char(char c) { return label_start(c) || (c >= '0' && c <= '9'); }

bool valid_metric_name(std::string_view n) {
  if (n.empty() || !name_start(n.front())) return false;
  for (const char c : n) {
    if (!name_char(c)) return false;
  }
  return true;
}

/// Parses a float as Go's strconv.ParseFloat would accept it in the exposition format.
double parse_value(std::string_view t) {
  if (t == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (t == "+Inf" || t == "Inf") return std::numeric_limits<double>::infinity();
  if (t == "-Inf") return -std::numeric_limits<double>::infinity();
  if (t.empty()) throw ParseError("missing value");
  for (const char c : t) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      throw ParseError("malformed value '" + std::string(t) + "'");
    }
  }
  const std::string s(t);
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) throw ParseError("malformed value '" + s + "'");
  return v;
}

std::string family_of(const std::string& sample_name, const std::map<std::string, PromFamily>& families) {
  if (families.count(sample_name) != 0) return sample_name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    const std::string_view sv(suffix);
    if (sample_name.size() > sv.size() && sample_name.compare(sample_name.size() - sv.size(), sv.size(), sv) == 0) {
      const std::string base = sample_name.substr(0, sample_name.size() - sv.size());
      if (families.count(base) != 0) return base;
    }
  }
  return sample_name;
}

void parse_comment(std::string_view line, PromExposition& e, std::set<std::string>& helped,
                   const std::set<std::string>& sampled) {
  // "# HELP name text" / "# TYPE name type"; other comments are free text.
  if (line.rfind("# HELP ", 0) != 0 && line.rfind("# TYPE ", 0) != 0) return;
  const bool help = line[2] == 'H';
  std::string_view rest = line.substr(7);
  const auto sp = rest.find(' ');
  const std::string name(rest.substr(0, sp));
  if (!valid_metric_name(name)) throw ParseError("invalid metric name '" + name + "' in " + (help ? "HELP" : "TYPE"));
  const std::string_view arg = sp == std::string_view::npos ? std::string_view() : rest.substr(sp + 1);
  if (help) {
    if (!helped.insert(name).second) throw ParseError("second HELP for " + name);
    for (std::size_t i = 0; i < arg.size(); ++i) {
      if (arg[i] == '\\' && (i + 1 >= arg.size() || (arg[i + 1] != '\\' && arg[i + 1] != 'n'))) {
        throw ParseError("invalid escape in HELP of " + name);
      }
      if (arg[i] == '\\') ++i;
    }
    e.families[name].help = std::string(arg);
    return;
  }
  static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary", "untyped"};
  if (kTypes.count(std::string(arg)) == 0) throw ParseError("unknown type '" + std::string(arg) + "' for " + name);
  if (!e.families[name].type.empty()) throw ParseError("second TYPE for " + name);
  if (sampled.count(name) != 0) throw ParseError("TYPE for " + name + " after its samples");
  e.families[name].type = std::string(arg);
}

PromSample parse_sample(std::string_view line) {
  PromSample s;
  std::size_t i = 0;
  while (i < line.size() && name_char(line[i])) ++i;
  s.name = std::string(line.substr(0, i));
  if (!valid_metric_name(s.name)) throw ParseError("invalid metric name in '" + std::string(line) + "'");
  if (i < line.size() && line[i] == '{') {
    ++i;
    for (;;) {
      if (i < line.size() && line[i] == '}') {
        ++i;
        break;
      }
      const std::size_t start = i;
      if (i >= line.size() || !label_start(line[i])) throw ParseError("invalid label name");
      while (i < line.size() && label_char(line[i])) ++i;
      const std::string lname(line.substr(start, i - start));
      if (lname.rfind("__", 0) == 0) throw ParseError("reserved label name " + lname);
      if (i >= line.size() || line[i] != '=') throw ParseError("expected '=' after label " + lname);
      ++i;
      if (i >= line.size() || line[i] != '"') throw ParseError("label value of " + lname + " is not quoted");
      ++i;
      std::string value;
      for (;;) {
        if (i >= line.size()) throw ParseError("unterminated label value of " + lname);
        const char c = line[i++];
        if (c == '"') break;
        if (c == '\\') {
          if (i >= line.size()) throw ParseError("unterminated escape");
          const char n = line[i++];
          if (n == '\\') value += '\\';
          else if (n == '"') value += '"';
          else if (n == 'n') value += '\n';
          else throw ParseError(std::string("invalid escape \\") + n + " in label " + lname);
        } else {
          value += c;
        }
      }
      if (!s.labels.emplace(lname, value).second) throw ParseError("label " + lname + " given twice");
      if (i < line.size() && line[i] == ',') {
        ++i;
        continue;
      }
      if (i < line.size() && line[i] == '}') continue;
      throw ParseError("expected ',' or '}' after label " + lname);
    }
  }
  if (i >= line.size() || line[i] != ' ') throw ParseError("expected one space before the value");
  ++i;
  std::string_view rest = line.substr(i);
  const auto sp = rest.find(' ');
  s.value = parse_value(rest.substr(0, sp));
  if (sp != std::string_view::npos) {
    const std::string_view ts = rest.substr(sp + 1);
    if (ts.empty()) throw ParseError("trailing space");
    for (std::size_t k = 0; k < ts.size(); ++k) {
      if (!((ts[k] >= '0' && ts[k] <= '9') || (k == 0 && ts[k] == '-'))) throw ParseError("malformed timestamp");
    }
  }
  return s;
}

}  // namespace

double PromExposition::value(const std::string& name, const std::map<std::string, std::string>& labels) const {
  for (const auto& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

std::size_t PromExposition::count(const std::string& name) const {
  std::size_t n = 0;
  for (const auto& s : samples) n += s.name == name ? 1U : 0U;
  return n;
}

PromExposition parse_prometheus(std::string_view text) {
  PromExposition e;
  std::set<std::string> helped;
  std::set<std::string> sampled;   // families with samples so far
  std::set<std::string> finished;  // families whose block of samples has ended
  std::set<std::string> series;
  std::string current;
  std::size_t line_no = 0;
  try {
    if (!text.empty() && text.back() != '\n') throw ParseError("the last line does not end with a line feed");
    std::size_t start = 0;
    while (start < text.size()) {
      const std::size_t end = text.find('\n', start);
      const std::string_view line = text.substr(start, end - start);
      start = end + 1;
      ++line_no;
      if (line.find('\r') != std::string_view::npos) throw ParseError("carriage return");
      if (line.empty()) continue;
      if (line.front() == '#') {
        parse_comment(line, e, helped, sampled);
        continue;
      }
      if (line.front() == ' ' || line.front() == '\t') throw ParseError("leading white space");
      PromSample s = parse_sample(line);
      const std::string family = family_of(s.name, e.families);
      if (family != current) {
        if (!current.empty()) finished.insert(current);
        if (finished.count(family) != 0) throw ParseError("samples of " + family + " are not together");
        current = family;
      }
      const auto f = e.families.find(family);
      if (f == e.families.end() || f->second.type.empty()) throw ParseError(family + " has samples but no TYPE");
      if (f->second.help.empty()) throw ParseError(family + " has samples but no HELP");
      if (f->second.type == "counter" && !(s.value >= 0)) throw ParseError("counter " + s.name + " is negative or NaN");
      std::string key = s.name + "{";
      for (const auto& [k, v] : s.labels) key += k + "=\"" + v + "\",";
      if (!series.insert(key).second) throw ParseError("duplicate series " + key + "}");
      sampled.insert(family);
      e.samples.push_back(std::move(s));
    }
  } catch (const ParseError& err) {
    e.error = "line " + std::to_string(line_no) + ": " + err.what();
  }
  return e;
}

}  // namespace softmig::tool::test
