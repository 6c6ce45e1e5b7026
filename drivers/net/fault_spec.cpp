// Strict parser and printer of the fault spec text format (docs/network.md).
#include "otarig/drivers/net/fault_spec.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <initializer_list>
#include <map>
#include <string>

#include "otarig/core/errors.hpp"

namespace otarig::drivers::net {
namespace {

// A piece of the spec text with its 0-based position in the whole text.
struct Token {
  std::string_view text;
  std::size_t pos = 0;
};

class Parser {
 public:
  Parser(std::string_view text, std::string_view origin) : text_(text), origin_(origin) {}

  FaultSpec parse() {
    FaultSpec spec;
    std::size_t begin = skip_space(0);
    std::size_t end = text_.size();
    while (end > begin && is_space(text_[end - 1])) --end;
    if (begin == end) return spec;
    std::size_t pos = begin;
    while (true) {
      std::size_t semi = text_.find(';', pos);
      if (semi == std::string_view::npos || semi > end) semi = end;
      Token rule = trim({text_.substr(pos, semi - pos), pos});
      if (rule.text.empty()) fail(semi, "empty rule (two ';' in a row or a ';' at an end)");
      spec.rules.push_back(parse_rule(rule));
      if (std::holds_alternative<Outage>(spec.rules.back().fault) &&
          std::count_if(spec.rules.begin(), spec.rules.end(),
                        [](const FaultRule& r) { return std::holds_alternative<Outage>(r.fault); }) > 1)
        fail(rule.pos, "one outage a spec: the server is either reachable or not");
      if (semi == end) break;
      pos = semi + 1;
      if (skip_space(pos) >= end) fail(semi, "empty rule after ';'");
    }
    return spec;
  }

  [[noreturn]] void fail(std::size_t pos, const std::string& message) const {
    throw InputError(std::string(origin_) + ":" + std::to_string(pos + 1) + ": " + message);
  }

  std::uint64_t number(Token t, std::string_view what) const {
    std::uint64_t v = 0;
    const char* first = t.text.data();
    const char* last = first + t.text.size();
    auto [ptr, ec] = std::from_chars(first, last, v);
    if (t.text.empty() || ec == std::errc::invalid_argument || (ptr != last && ec == std::errc()))
      fail(t.pos + static_cast<std::size_t>(ptr - first), std::string(what) + ": expected an unsigned integer");
    if (ec == std::errc::result_out_of_range) fail(t.pos, std::string(what) + ": number out of range");
    return v;
  }

  std::uint64_t size(Token t, std::string_view what) const {
    std::size_t digits = 0;
    while (digits < t.text.size() && t.text[digits] >= '0' && t.text[digits] <= '9') ++digits;
    if (digits == 0) fail(t.pos, std::string(what) + ": expected a size such as 4096, 64KiB or 1MiB");
    std::uint64_t v = number({t.text.substr(0, digits), t.pos}, what);
    std::string_view unit = t.text.substr(digits);
    static const std::map<std::string_view, std::uint64_t> units = {
        {"", 1},           {"B", 1},
        {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30},
        {"kB", 1000},      {"MB", 1000000},     {"GB", 1000000000}};
    auto it = units.find(unit);
    if (it == units.end())
      fail(t.pos + digits, std::string(what) + ": unknown size unit '" + std::string(unit) +
                               "' (B, KiB, MiB, GiB, kB, MB, GB)");
    if (v != 0 && it->second > UINT64_MAX / v) fail(t.pos, std::string(what) + ": size out of range");
    return v * it->second;
  }

  std::chrono::microseconds duration(Token t, std::string_view what) const {
    std::size_t digits = 0;
    while (digits < t.text.size() && t.text[digits] >= '0' && t.text[digits] <= '9') ++digits;
    if (digits == 0) fail(t.pos, std::string(what) + ": expected a duration such as 5ms, 250us or 2s");
    std::uint64_t v = number({t.text.substr(0, digits), t.pos}, what);
    std::string_view unit = t.text.substr(digits);
    std::uint64_t scale = 0;
    if (unit == "us") scale = 1;
    else if (unit == "ms" || unit.empty()) scale = 1000;
    else if (unit == "s") scale = 1000000;
    else if (unit == "m") scale = 60000000;
    else fail(t.pos + digits, std::string(what) + ": unknown duration unit '" + std::string(unit) + "' (us, ms, s, m)");
    // One day is plenty for any fault and keeps arithmetic on time points safe.
    constexpr std::uint64_t kMaxMicros = 86400ull * 1000000;
    if (v > kMaxMicros / scale) fail(t.pos, std::string(what) + ": duration longer than one day");
    return std::chrono::microseconds(static_cast<std::int64_t>(v * scale));
  }

 private:
  static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
  std::size_t skip_space(std::size_t pos) const {
    while (pos < text_.size() && is_space(text_[pos])) ++pos;
    return pos;
  }
  static Token trim(Token t) {
    while (!t.text.empty() && is_space(t.text.front())) {
      t.text.remove_prefix(1);
      ++t.pos;
    }
    while (!t.text.empty() && is_space(t.text.back())) t.text.remove_suffix(1);
    return t;
  }

  FaultRule parse_rule(Token rule) {
    for (std::size_t i = 0; i < rule.text.size(); ++i)
      if (is_space(rule.text[i])) fail(rule.pos + i, "whitespace inside a rule");
    std::vector<Token> parts;
    std::size_t start = 0;
    for (std::size_t i = 0; i <= rule.text.size(); ++i) {
      if (i == rule.text.size() || rule.text[i] == ':') {
        parts.push_back({rule.text.substr(start, i - start), rule.pos + start});
        start = i + 1;
      }
    }
    FaultRule out;
    out.column = rule.pos + 1;
    std::size_t i = 0;
    if (parts[i].text.starts_with("conn=")) {
      parse_connections(parts[i], out);
      ++i;
    }
    bool have_direction = false;
    if (i < parts.size()) {
      std::string_view d = parts[i].text;
      if (d == "up" || d == "down" || d == "both") {
        out.up = d != "down";
        out.down = d != "up";
        have_direction = true;
        ++i;
      } else if (d == "server" && i + 1 < parts.size()) {
        if (out.first_connection != 0)
          fail(parts[0].pos, "a server: rule applies to the update server's responses, not to connections: drop conn=");
        out.server = true;
        have_direction = true;
        ++i;
      }
    }
    if (i >= parts.size()) fail(rule.pos + rule.text.size(), "missing fault after ':'");
    if (!have_direction && i + 1 < parts.size())
      fail(parts[i].pos, "expected up, down or both before ':', got '" + std::string(parts[i].text) + "'");
    if (i + 1 < parts.size()) {
      Token extra = parts[i + 1];
      fail(extra.pos - 1, "unexpected ':' (a rule is [conn=N:][up:|down:|both:]fault or server:fault)");
    }
    Token fault = parts[i];
    if (fault.text.empty()) fail(fault.pos, "missing fault");
    out.fault = parse_fault(fault);
    if (out.server) {
      if (std::holds_alternative<WrongRanges>(out.fault)) return out;
      const auto* e = std::get_if<Endless>(&out.fault);
      if (!e)
        fail(fault.pos, std::string("the update server applies only endless (server:endless@limit=SIZE) and "
                                    "wrong-ranges (server:wrong-ranges), not ") +
                            fault_name(out.fault));
      if (e->after) fail(fault.pos, "server:endless starts after the resource's own bytes: drop after=");
      return out;
    }
    if (std::holds_alternative<WrongRanges>(out.fault)) {
      fail(fault.pos, "wrong-ranges is the update server's own answer: write server:wrong-ranges");
    }
    const bool outage = std::holds_alternative<Outage>(out.fault);
    if (outage && out.first_connection != 0)
      fail(parts[0].pos, "an outage applies to every connection while it lasts: drop conn=");
    bool impostor = std::holds_alternative<Impostor>(out.fault) || std::holds_alternative<AskClientCert>(out.fault) ||
                    std::holds_alternative<ServerCertificate>(out.fault) || outage;
    if (impostor && have_direction)
      fail(parts[i - 1].pos, std::string(fault_name(out.fault)) + " applies to the whole connection: drop the direction");
    if (!impostor && !have_direction) fail(fault.pos, "missing direction: write up:, down: or both: before the fault");
    if (impostor) out.up = out.down = true;
    if (const auto* r = std::get_if<Replay>(&out.fault)) {
      if (out.first_connection == 0 || out.first_connection <= r->from)
        fail(fault.pos, "replay@from=" + std::to_string(r->from) +
                            " needs conn=N (N > " + std::to_string(r->from) +
                            ") so the recording comes from an earlier connection");
    }
    return out;
  }

  void parse_connections(Token t, FaultRule& out) {
    Token value{t.text.substr(5), t.pos + 5};
    std::size_t dash = value.text.find('-');
    if (dash == std::string_view::npos) {
      out.first_connection = out.last_connection = number(value, "conn");
    } else {
      out.first_connection = number({value.text.substr(0, dash), value.pos}, "conn");
      out.last_connection = number({value.text.substr(dash + 1), value.pos + dash + 1}, "conn");
    }
    if (out.first_connection == 0) fail(value.pos, "conn: connections count from 1");
    if (out.last_connection < out.first_connection) fail(value.pos, "conn: range ends before it begins");
  }

  struct Param {
    Token key;
    Token value;
  };

  // A fault's parts: NAME[=VALUE][@KEY=VALUE,...] (also NAME=VALUE,KEY=VALUE).
  struct FaultSyntax {
    Token name;
    std::optional<Token> main;
    std::vector<Param> params;
  };

  FaultSyntax split_fault(Token t) {
    std::size_t name_end = 0;
    // Lowercase letters, and '-' between words (ask-client-cert).
    while (name_end < t.text.size() && ((t.text[name_end] >= 'a' && t.text[name_end] <= 'z') ||
                                        (t.text[name_end] == '-' && name_end > 0)))
      ++name_end;
    FaultSyntax f{Token{t.text.substr(0, name_end), t.pos}, std::nullopt, {}};
    auto& name = f.name;
    auto& main = f.main;
    auto& params = f.params;
    std::size_t pos = name_end;
    if (pos < t.text.size() && t.text[pos] == '=') {
      std::size_t end = t.text.find_first_of(",@", pos + 1);
      if (end == std::string_view::npos) end = t.text.size();
      main = Token{t.text.substr(pos + 1, end - pos - 1), t.pos + pos + 1};
      if (main->text.empty()) fail(main->pos, std::string(name.text) + ": empty value after '='");
      pos = end;
    }
    if (pos < t.text.size()) {
      char sep = t.text[pos];
      if (sep == ',' && !main) fail(t.pos + pos, std::string(name.text) + ": parameters start with '@'");
      if (sep != ',' && sep != '@') fail(t.pos + pos, "unexpected character '" + std::string(1, sep) + "' in fault");
      ++pos;
      while (true) {
        std::size_t end = t.text.find(',', pos);
        if (end == std::string_view::npos) end = t.text.size();
        Token item{t.text.substr(pos, end - pos), t.pos + pos};
        std::size_t eq = item.text.find('=');
        if (item.text.empty()) fail(item.pos, "empty parameter");
        if (eq == std::string_view::npos) fail(item.pos, "parameter '" + std::string(item.text) + "' needs '=value'");
        Param p{{item.text.substr(0, eq), item.pos}, {item.text.substr(eq + 1), item.pos + eq + 1}};
        if (p.key.text.empty()) fail(item.pos, "empty parameter name");
        if (p.value.text.empty()) fail(p.value.pos, "parameter '" + std::string(p.key.text) + "' has an empty value");
        if (p.value.text.find_first_of("@=") != std::string_view::npos)
          fail(p.value.pos + p.value.text.find_first_of("@="), "unexpected character in value");
        params.push_back(p);
        if (end == t.text.size()) break;
        pos = end + 1;
      }
    }
    if (main && main->text.find_first_of("@=") != std::string_view::npos)
      fail(main->pos + main->text.find_first_of("@="), "unexpected character in value");
    return f;
  }

  Fault parse_fault(Token t) {
    const FaultSyntax syntax = split_fault(t);
    const Token& name = syntax.name;
    const std::optional<Token>& main = syntax.main;
    const std::vector<Param>& params = syntax.params;

    if (name.text.empty()) fail(t.pos, "expected a fault name (corrupt, truncate, reset, stall, throttle, latency, "
                                       "slice, endless, replay, impostor, ask-client-cert, certificate, outage)");
    // Checks parameter names against `allowed`; the main value (name=value)
    // stands for the first of them when `main_key` is set.
    auto collect = [&](std::initializer_list<std::string_view> allowed,
                       std::optional<std::string_view> main_key) -> std::map<std::string_view, Token> {
      std::map<std::string_view, Token> out;
      if (main) {
        if (!main_key) fail(main->pos - 1, std::string(name.text) + " takes no value after '='; use '@key=value'");
        out.emplace(*main_key, *main);
      }
      for (const Param& p : params) {
        bool known = false;
        for (auto a : allowed) known = known || a == p.key.text;
        if (!known) {
          std::string list;
          for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
          fail(p.key.pos, std::string(name.text) + ": unknown parameter '" + std::string(p.key.text) + "'" +
                              (list.empty() ? " (it takes none)" : " (known: " + list + ")"));
        }
        if (!out.emplace(p.key.text, p.value).second)
          fail(p.key.pos, std::string(name.text) + ": parameter '" + std::string(p.key.text) + "' given twice");
      }
      return out;
    };
    auto require = [&](const std::map<std::string_view, Token>& m, std::string_view key) -> Token {
      auto it = m.find(key);
      if (it == m.end()) fail(t.pos + t.text.size(), std::string(name.text) + ": missing parameter '" + std::string(key) + "'");
      return it->second;
    };

    std::string_view n = name.text;
    if (n == "corrupt") {
      auto m = collect({"offset", "count", "rate", "mask"}, std::nullopt);
      Corrupt c;
      bool has_offset = m.count("offset") != 0;
      bool has_rate = m.count("rate") != 0;
      if (has_offset == has_rate) fail(t.pos, "corrupt: give exactly one of offset= or rate=");
      if (has_offset) {
        c.offset = size(m.at("offset"), "corrupt offset");
        if (m.count("count")) c.count = size(m.at("count"), "corrupt count");
        if (c.count == 0) fail(m.at("count").pos, "corrupt count: must be at least 1");
        if (*c.offset > UINT64_MAX - c.count) fail(m.at("offset").pos, "corrupt: offset + count out of range");
      } else {
        if (m.count("count")) fail(m.at("count").pos, "corrupt: count= goes with offset=, not rate=");
        c.rate = probability(m.at("rate"));
      }
      if (m.count("mask")) {
        Token mt = m.at("mask");
        std::uint64_t v = 0;
        if (mt.text.starts_with("0x") || mt.text.starts_with("0X")) {
          auto [ptr, ec] = std::from_chars(mt.text.data() + 2, mt.text.data() + mt.text.size(), v, 16);
          if (mt.text.size() == 2 || ec != std::errc() || ptr != mt.text.data() + mt.text.size())
            fail(mt.pos, "corrupt mask: expected 1..255 or 0x01..0xff");
        } else {
          v = number(mt, "corrupt mask");
        }
        if (v == 0 || v > 255) fail(mt.pos, "corrupt mask: must be 1..255 (a zero mask changes nothing)");
        c.mask = static_cast<std::uint8_t>(v);
      }
      return c;
    }
    if (n == "truncate" || n == "reset" || n == "stall") {
      auto m = collect({"b"}, "b");
      std::uint64_t at = size(require(m, "b"), std::string(n) + " b");
      if (n == "truncate") return Truncate{at};
      if (n == "reset") return Reset{at};
      return Stall{at};
    }
    if (n == "throttle") {
      auto m = collect({"rate"}, "rate");
      Token r = require(m, "rate");
      if (r.text.ends_with("/s")) r.text.remove_suffix(2);
      std::uint64_t v = size(r, "throttle rate");
      if (v == 0) fail(r.pos, "throttle rate: must be at least 1 byte/s (use stall to stop)");
      if (v > 10000000000ull) fail(r.pos, "throttle rate: at most 10GB/s");
      return Throttle{v};
    }
    if (n == "latency") {
      auto m = collect({"delay", "jitter"}, "delay");
      Latency l;
      l.delay = duration(require(m, "delay"), "latency delay");
      if (m.count("jitter")) l.jitter = duration(m.at("jitter"), "latency jitter");
      if (l.jitter > l.delay) fail(m.at("jitter").pos, "latency jitter: must not exceed the delay");
      return l;
    }
    if (n == "slice") {
      auto m = collect({"size", "delay"}, "size");
      Slice s;
      s.size = size(require(m, "size"), "slice size");
      if (s.size == 0) fail(m.at("size").pos, "slice size: must be at least 1");
      if (m.count("delay")) s.delay = duration(m.at("delay"), "slice delay");
      return s;
    }
    if (n == "endless") {
      auto m = collect({"after", "limit"}, std::nullopt);
      Endless e;
      if (m.count("after")) e.after = size(m.at("after"), "endless after");
      if (m.count("limit")) e.limit = size(m.at("limit"), "endless limit");
      return e;
    }
    if (n == "replay") {
      auto m = collect({"from"}, "from");
      Token f = require(m, "from");
      std::uint64_t from = number(f, "replay from");
      if (from == 0) fail(f.pos, "replay from: connections count from 1");
      return Replay{from};
    }
    if (n == "impostor") {
      collect({}, std::nullopt);
      return Impostor{};
    }
    if (n == "ask-client-cert") {
      collect({}, std::nullopt);
      return AskClientCert{};
    }
    if (n == "certificate") {
      auto m = collect({"name"}, "name");
      Token v = require(m, "name");
      std::string known;
      for (const char* c : kServerCertificateNames) {
        if (v.text == c) return ServerCertificate{std::string(v.text)};
        known += (known.empty() ? "" : ", ") + std::string(c);
      }
      fail(v.pos, "certificate: unknown certificate '" + std::string(v.text) + "' (" + known + ")");
    }
    if (n == "outage") {
      auto m = collect({"mode", "for"}, "mode");
      Outage o;
      Token mode = require(m, "mode");
      if (mode.text == "refuse") o.mode = Outage::Mode::refuse;
      else if (mode.text == "drop") o.mode = Outage::Mode::drop;
      else fail(mode.pos, "outage mode: refuse or drop, not '" + std::string(mode.text) + "'");
      o.length = duration(require(m, "for"), "outage for");
      if (o.length.count() <= 0) fail(m.at("for").pos, "outage for: must be longer than zero");
      return o;
    }
    if (n == "wrong-ranges") {
      collect({}, std::nullopt);
      return WrongRanges{};
    }
    fail(name.pos, "unknown fault '" + std::string(n) +
                       "' (corrupt, truncate, reset, stall, throttle, latency, slice, endless, replay, impostor, "
                       "ask-client-cert, certificate, outage, wrong-ranges)");
  }

  double probability(Token t) const {
    double v = 0;
    const char* first = t.text.data();
    const char* last = first + t.text.size();
    auto [ptr, ec] = std::from_chars(first, last, v);
    if (ec != std::errc() || ptr != last || !std::isfinite(v))
      fail(t.pos, "corrupt rate: expected a probability such as 1e-6");
    if (!(v > 0.0 && v <= 1.0)) fail(t.pos, "corrupt rate: must be in (0, 1]");
    return v;
  }

  std::string_view text_;
  std::string_view origin_;
};

std::string size_text(std::uint64_t v) { return std::to_string(v); }

std::string duration_text(std::chrono::microseconds d) {
  auto us = d.count();
  if (us % 1000000 == 0 && us != 0) return std::to_string(us / 1000000) + "s";
  if (us % 1000 == 0) return std::to_string(us / 1000) + "ms";
  return std::to_string(us) + "us";
}

std::string double_text(double v) {
  char buf[64];
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  return std::string(buf, ptr);
}

struct Printer {
  std::string operator()(const Corrupt& c) const {
    std::string s = "corrupt@";
    if (c.offset) s += "offset=" + size_text(*c.offset) + ",count=" + size_text(c.count);
    else s += "rate=" + double_text(c.rate);
    if (c.mask) s += ",mask=" + std::to_string(c.mask);
    return s;
  }
  std::string operator()(const Truncate& f) const { return "truncate@b=" + size_text(f.at); }
  std::string operator()(const Reset& f) const { return "reset@b=" + size_text(f.at); }
  std::string operator()(const Stall& f) const { return "stall@b=" + size_text(f.at); }
  std::string operator()(const Throttle& f) const { return "throttle@rate=" + size_text(f.bytes_per_second); }
  std::string operator()(const Latency& f) const {
    return "latency@delay=" + duration_text(f.delay) + ",jitter=" + duration_text(f.jitter);
  }
  std::string operator()(const Slice& f) const {
    return "slice@size=" + size_text(f.size) + ",delay=" + duration_text(f.delay);
  }
  std::string operator()(const Endless& f) const {
    std::string s = "endless";
    std::string sep = "@";
    if (f.after) {
      s += sep + "after=" + size_text(*f.after);
      sep = ",";
    }
    if (f.limit) s += sep + "limit=" + size_text(f.limit);
    return s;
  }
  std::string operator()(const Replay& f) const { return "replay@from=" + std::to_string(f.from); }
  std::string operator()(const Impostor&) const { return "impostor"; }
  std::string operator()(const AskClientCert&) const { return "ask-client-cert"; }
  std::string operator()(const ServerCertificate& f) const { return "certificate=" + f.name; }
  std::string operator()(const Outage& f) const {
    return std::string("outage=") + to_string(f.mode) + ",for=" + duration_text(f.length);
  }
  std::string operator()(const WrongRanges&) const { return "wrong-ranges"; }
};

}  // namespace

const char* to_string(Direction d) { return d == Direction::up ? "up" : "down"; }

const char* to_string(Outage::Mode m) { return m == Outage::Mode::refuse ? "refuse" : "drop"; }

const char* fault_name(const Fault& f) {
  static constexpr const char* names[] = {"corrupt", "truncate", "reset",   "stall",  "throttle",
                                          "latency", "slice",    "endless", "replay", "impostor",
                                          "ask-client-cert", "certificate", "outage", "wrong-ranges"};
  return names[f.index()];
}

std::string FaultSpec::text() const {
  std::string out;
  for (const FaultRule& r : rules) {
    if (!out.empty()) out += ';';
    if (r.first_connection != 0) {
      out += "conn=" + std::to_string(r.first_connection);
      if (r.last_connection != r.first_connection) out += "-" + std::to_string(r.last_connection);
      out += ':';
    }
    if (r.server)
      out += "server:";
    else if (!std::holds_alternative<Impostor>(r.fault) && !std::holds_alternative<AskClientCert>(r.fault) &&
             !std::holds_alternative<ServerCertificate>(r.fault) && !std::holds_alternative<Outage>(r.fault))
      out += r.up && r.down ? "both:" : r.up ? "up:" : "down:";
    out += std::visit(Printer{}, r.fault);
  }
  return out;
}

FaultSpec FaultSpec::proxy_rules() const {
  FaultSpec out;
  for (const auto& r : rules)
    if (!r.server) out.rules.push_back(r);
  return out;
}

std::optional<Outage> FaultSpec::outage() const {
  for (const auto& r : rules)
    if (const auto* o = std::get_if<Outage>(&r.fault)) return *o;
  return std::nullopt;
}

FaultSpec FaultSpec::server_rules() const {
  FaultSpec out;
  for (const auto& r : rules)
    if (r.server) out.rules.push_back(r);
  return out;
}

FaultSpec parse_fault_spec(std::string_view text, std::string_view origin) { return Parser(text, origin).parse(); }

std::chrono::microseconds parse_duration(std::string_view text, std::string_view what) {
  return Parser(text, what).duration({text, 0}, what);
}

std::uint64_t parse_size(std::string_view text, std::string_view what) {
  return Parser(text, what).size({text, 0}, what);
}

}  // namespace otarig::drivers::net
