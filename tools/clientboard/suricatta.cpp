// SWUpdate's runs on the SWUpdate boards (suricatta.hpp, docs/ota-clients.md).
#include "suricatta.hpp"

#include <sstream>

#include "common.hpp"
#include "otarig/drivers/clients/package.hpp"
#include "otarig/drivers/clients/tools.hpp"

namespace otarig::clientboard {
namespace cl = drivers::clients;

SwupdateNamespace swupdate_namespace(const cl::SlotLayout& layout, const std::string& hardware,
                                     const std::string& running_version) {
  cl::ubootenv::write_config(layout);
  std::ifstream cfg(layout.env_config());
  std::stringstream cfg_text;
  cfg_text << cfg.rdbuf();
  const auto colon = hardware.find(':');
  const auto hw_name = hardware.substr(0, colon);
  const auto hw_rev = colon == std::string::npos ? std::string("1.0") : hardware.substr(colon + 1);
  return {{{"fw_env.config", cfg_text.str()},
           {"hwrevision", hw_name + " " + hw_rev + "\n"},
           {"sw-versions", "otarig " + running_version + "\n"}},
          {{cl::kSwuSlotDevice[0], std::filesystem::absolute(layout.slot(0)).string()},
           {cl::kSwuSlotDevice[1], std::filesystem::absolute(layout.slot(1)).string()}}};
}

// The IPC and channel errors that follow a refusal are consequences, not
// causes; so are suricatta's own lines after an install failed, and its note
// that the environment holds no update state yet.
std::optional<std::string> swupdate_reason(const std::vector<std::string>& errors) {
  auto strip = [](std::string t) {
    for (const char* prefix : {"[ERROR] : ", "SWUPDATE failed ", "ERROR : "}) {
      if (auto at = t.find(prefix); at != std::string::npos) t = t.substr(at + std::strlen(prefix));
      if (t.size() > 3 && t[0] == '[' && t.find("] ") != std::string::npos) t = t.substr(t.find("] ") + 2);
    }
    return trim(t);
  };
  auto consequence = [](const std::string& e) {
    for (const char* c : {"IPC stream failed", "Channel operation returned", "*failed*", "Cannot read stored update state",
                          "No suitable .swu image found", "Error processing update chunk"})
      if (e.find(c) != std::string::npos) return true;
    return false;
  };
  for (const auto& e : errors)
    if (e.find("ERROR : ") != std::string::npos && !consequence(e)) return strip(e);
  for (const auto& e : errors)
    if (!consequence(e)) return strip(e);
  if (!errors.empty()) return strip(errors.front());
  return std::nullopt;
}

namespace {

// A string in libconfig syntax.
std::string config_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// SWUpdate's log line without its prefix: "[LEVEL] : SWUPDATE running :  [function] : text".
std::string message_of(const std::string& line) {
  auto at = line.find("] : ");
  if (at == std::string::npos) return trim(line);
  auto rest = line.substr(at + 4);
  if (auto fn = rest.find("] : "); fn != std::string::npos && rest.find('[') < fn) rest = rest.substr(fn + 4);
  return trim(rest);
}

// What the console shows of SWUpdate's output: its notices, warnings and
// errors; the trace and debug lines stay out, as do the handler list and
// the banner.
bool shown(const std::string& text) {
  if (trim(text).empty()) return false;
  for (const char* noise : {"[TRACE]", "[DEBUG]", "print_registered_handlers", "Licensed under GPLv2", "mtd", "MTD"})
    if (text.find(noise) != std::string::npos) return false;
  return true;
}

// A poll of the server that failed with one of libcurl's codes of a TLS
// failure (the peer's certificate, the handshake, the certificate or key
// files): the device and the server did not accept each other, which no
// retry changes. (A failed feedback is suricatta's to retry.)
bool tls_failure(const std::string& text) {
  if (text.find("Channel get operation failed") == std::string::npos) return false;
  for (const char* code : {"(35)", "(58)", "(59)", "(60)", "(77)", "(83)", "(90)", "(91)"})
    if (text.find(code) != std::string::npos) return true;
  return false;
}

}  // namespace

SuricattaClient::SuricattaClient(cl::SlotLayout layout, Settings settings)
    : layout_(std::move(layout)), s_(std::move(settings)) {}

void SuricattaClient::write_config(const std::string& running_version) const {
  std::string token;
  if (!s_.token_file.empty()) {
    std::ifstream in(s_.token_file);
    std::getline(in, token);
    token = trim(token);
  }
  std::string section = fmt::format("\ttenant = {};\n\tid = {};\n\turl = {};\n", config_string(s_.tenant),
                                    config_string(s_.controller_id), config_string(s_.server_url));
  if (!token.empty()) section += fmt::format("\ttargettoken = {};\n", config_string(token));
  if (!s_.server_ca.empty()) section += fmt::format("\tcafile = {};\n", config_string(s_.server_ca));
  if (!s_.client_cert.empty() && !s_.client_key.empty())
    section += fmt::format("\tsslcert = {};\n\tsslkey = {};\n", config_string(s_.client_cert),
                           config_string(s_.client_key));
  const auto text = fmt::format(
      "# otarig: SWUpdate's configuration on this device (suricatta in hawkBit mode), written when it changes\n"
      "# (SWUpdate refuses a configuration file without `globals`; the command line sets the rest)\n"
      "globals :\n{{\n}};\n"
      "suricatta :\n{{\n{}}};\n"
      "identify : (\n\t{{ name = \"board\"; value = {}; }},\n\t{{ name = \"version\"; value = {}; }}\n);\n",
      section, config_string(s_.hardware), config_string(running_version));
  std::error_code ignored;
  std::filesystem::create_directories(config_file().parent_path(), ignored);
  std::ifstream in(config_file());
  std::stringstream current;
  current << in.rdbuf();
  if (current.str() != text) cl::write_text_atomically(config_file(), text);
}

std::optional<std::string> SuricattaClient::update(int booted, const cl::SlotImage& running) {
  write_config(running.client_version);
  const int target = 1 - booted;
  const auto ns = swupdate_namespace(layout_, s_.hardware, running.client_version);
  std::vector<std::string> argv{"swupdate", "-v", "-B", "uboot", "-H", s_.hardware, "-k", s_.package_ca};
  if (s_.downgrade_check) {
    argv.push_back("-N");
    argv.push_back(running.client_version);
  }
  if (!s_.aes_key.empty()) argv.insert(argv.end(), {"-K", s_.aes_key});
  // -c 0: a device whose suricatta runs since boot has reported what the
  // environment held then (report_at_boot); this run only takes the
  // deployment. Polls every second until the server says otherwise; one
  // retry of an interrupted download after a second.
  argv.insert(argv.end(), {"-e", std::string("stable,copy") + cl::slot_name(target), "-f", config_file().string(),
                           "-u", "-c 0 -p 1 -r 1 -w 1 -m 1 -s 10"});
  say("ota: swupdate " + command_line(argv));
  Child child(argv, [&] { return enter_device_namespace(ns.etc, ns.links); });
  const auto deadline = Clock::now() + std::chrono::milliseconds(s_.timeout_ms);
  std::vector<std::string> errors;
  bool attempted = false;
  std::optional<std::string> refused;
  bool installed = false;
  while (auto l = child.line(deadline)) {
    const auto& text = *l;
    if (shown(text)) say("swupdate: " + text);
    // (SWUpdate logs an environment without `ustate` as an error: no cause.)
    if (text.find("[ERROR]") != std::string::npos && text.find("Cannot read stored update state") == std::string::npos)
      errors.push_back(text);
    const auto msg = message_of(text);
    if (msg.rfind("Update successful, executing post-update actions", 0) == 0) {
      // Installed and reported as far as suricatta reports before the
      // reboot ("All Chunks Installed."): the post-update action is the
      // device's reboot.
      installed = true;
      break;
    }
    // (Debian's build logs no DEBUG lines: the markers are TRACE and INFO.)
    if (msg.rfind("Associated Action ID for Update Action is", 0) == 0) attempted = true;
    if (attempted && msg.rfind("No pending action on server", 0) == 0) {
      // The action it took is closed: suricatta reported its failure, and
      // polls on.
      refused = swupdate_reason(errors).value_or("SWUpdate closed the deployment without installing it");
      break;
    }
    if (tls_failure(text)) {
      refused = "TLS with the server failed: " + swupdate_reason({text}).value_or(msg);
      break;
    }
    if (text.find("HTTP error code 401") != std::string::npos || text.find("HTTP error code 403") != std::string::npos) {
      refused = "the server refused the device: " + swupdate_reason({text}).value_or(msg);
      break;
    }
  }
  const bool timed_out = child.timed_out();
  child.signal(SIGTERM);
  child.wait(std::chrono::seconds(3));
  if (installed) return std::nullopt;
  if (refused) return refused;
  if (timed_out) {
    auto reason = swupdate_reason(errors);
    return fmt::format("suricatta did not finish within {} ms{}", s_.timeout_ms, reason ? " (" + *reason + ")" : "");
  }
  return swupdate_reason(errors).value_or("swupdate exited without installing");
}

void SuricattaClient::report_at_boot(const cl::SlotImage& running) {
  const auto env = cl::ubootenv::read(layout_);
  if (!env) return;
  auto get = [&](const char* k) {
    auto it = env->find(k);
    return it == env->end() ? std::string() : it->second;
  };
  const auto ustate = get("ustate");
  std::string confirm;
  if (ustate == "1" && get("upgrade_available") == "0")
    confirm = "2";  // installed, booted and confirmed: success
  else if (ustate == "3")
    confirm = "3";  // fell back, or the install failed: failure
  else
    return;
  write_config(running.client_version);
  const auto ns = swupdate_namespace(layout_, s_.hardware, running.client_version);
  say(fmt::format("app: SWUpdate's update state ustate={}: suricatta reports {}", ustate,
                  confirm == "2" ? "success" : "failure"));
  std::vector<std::string> argv{"swupdate", "-v",          "-B", "uboot", "-H", s_.hardware, "-k", s_.package_ca,
                                "-f",       config_file().string(), "-u", fmt::format("-c {} -p 1 -m 1 -s 10", confirm)};
  Child child(argv, [&] { return enter_device_namespace(ns.etc, ns.links); });
  const auto deadline = Clock::now() + std::chrono::milliseconds(s_.timeout_ms);
  bool started = false;
  while (auto l = child.line(deadline)) {
    if (shown(*l)) say("swupdate: " + *l);
    // server_start() returns once the state was reported (or there was no
    // open action to report it to).
    if (message_of(*l).rfind("Server initialized, entering suricatta main loop", 0) == 0) {
      started = true;
      break;
    }
    if (tls_failure(*l)) break;
  }
  child.signal(SIGTERM);
  child.wait(std::chrono::seconds(3));
  const auto after = cl::ubootenv::read(layout_);
  const auto now = after && after->count("ustate") ? after->at("ustate") : std::string();
  if (now == "0") {
    say(fmt::format("app: suricatta reported the update's {} and cleared ustate", confirm == "2" ? "success" : "failure"));
    return;
  }
  // Nothing took the report (no open action, or no server): the outcome is
  // not reported, and the next update must not inherit it.
  say(fmt::format("app: suricatta {}; ustate cleared without a report",
                  started ? "found no open deployment to report to" : "could not report"));
  cl::ubootenv::write(layout_, {{"ustate", "0"}});
}

}  // namespace otarig::clientboard
