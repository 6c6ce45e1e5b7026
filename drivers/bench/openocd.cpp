#include "otarig/drivers/bench/openocd.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>
#include <system_error>

#include "otarig/core/errors.hpp"

namespace otarig::drivers::bench {
namespace {

using boost::asio::ip::tcp;
constexpr char kTerminator = '\x1a';
constexpr std::chrono::milliseconds kConnectTimeout{2000};
constexpr std::chrono::milliseconds kShutdownGrace{2000};
// Pause between attempts to reach a starting OpenOCD's TCL port.
constexpr std::chrono::milliseconds kStartupPoll{20};

// The clock of a probe made without one.
Clock& steady() {
  static SteadyClock clock;
  return clock;
}

/// The TCL connection went away (EOF, reset, refused): the server may have died.
class ConnectionLost : public BenchError {
 public:
  using BenchError::BenchError;
};

std::exception_ptr lost(const std::string& what, const boost::system::error_code& ec) {
  return std::make_exception_ptr(ConnectionLost(fmt::format("{}: {}", what, ec.message())));
}

std::optional<std::uint32_t> parse_word(std::string_view token, int default_base) {
  int base = default_base;
  if (token.size() > 2 && token[0] == '0' && (token[1] == 'x' || token[1] == 'X')) {
    token.remove_prefix(2);
    base = 16;
  }
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value, base);
  if (ec != std::errc() || end != token.data() + token.size() || value > 0xffffffffu) return std::nullopt;
  return static_cast<std::uint32_t>(value);
}

std::vector<std::string_view> split_ws(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t start = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > start) out.push_back(text.substr(start, i - start));
  }
  return out;
}

// What to quote from a failed start: OpenOCD's "Error:" lines (the cause is
// often followed by a long list, say of every adapter driver), then the last lines.
std::string startup_report(const std::string& log) {
  std::vector<std::string> lines;
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  std::string out;
  for (const auto& l : lines) {
    if (l.rfind("Error", 0) == 0) out += l + "\n";
  }
  std::size_t first = lines.size() > 8 ? lines.size() - 8 : 0;
  if (!out.empty() && first > 0) out += "...\n";
  for (std::size_t i = first; i < lines.size(); ++i) {
    if (out.find(lines[i] + "\n") == std::string::npos || lines[i].rfind("Error", 0) != 0)
      out += lines[i] + "\n";
  }
  return out;
}

std::string braced(const std::filesystem::path& path) {
  auto s = path.string();
  if (s.find_first_of("{}") != std::string::npos) {
    throw InputError(fmt::format("image path '{}' contains a brace, which OpenOCD cannot take", s));
  }
  return "{" + s + "}";
}

// The temporary OpenOCD log the probe made; nothing to report when it is gone.
void remove_log_file(const std::filesystem::path& file) noexcept {
  std::error_code ignored;
  std::filesystem::remove(file, ignored);
}

}  // namespace

// ---- the TCL RPC connection, used on the io thread ----

class OpenOcdProbe::Connection : public std::enable_shared_from_this<OpenOcdProbe::Connection> {
 public:
  explicit Connection(boost::asio::io_context& io) : socket_(io), timer_(io) {}

  void async_connect(const std::string& host, std::uint16_t port, std::chrono::milliseconds timeout,
                     Done done) {
    boost::system::error_code ec;
    auto address = boost::asio::ip::make_address(host, ec);
    std::vector<tcp::endpoint> endpoints;
    if (!ec) {
      endpoints.emplace_back(address, port);
    } else {
      tcp::resolver resolver(socket_.get_executor());
      for (const auto& entry : resolver.resolve(host, std::to_string(port)))
        endpoints.push_back(entry.endpoint());
    }
    auto self = shared_from_this();
    auto finished = std::make_shared<bool>(false);
    auto complete = [self, finished, done](std::exception_ptr error) {
      if (*finished) return;
      *finished = true;
      self->timer_.cancel();
      done(error);
    };
    timer_.expires_after(timeout);
    timer_.async_wait([self, complete, host, port, timeout](const boost::system::error_code& e) {
      if (e) return;
      self->close();
      complete(std::make_exception_ptr(TimeoutError(
          fmt::format("connect to {}:{}: no answer within {} ms", host, port, timeout.count()))));
    });
    boost::asio::async_connect(
        socket_, endpoints,
        [self, complete, host, port](const boost::system::error_code& e, const tcp::endpoint&) {
          if (e == boost::asio::error::operation_aborted) return;
          if (e) {
            complete(lost(fmt::format("connect to {}:{}", host, port), e));
            return;
          }
          boost::system::error_code ignored;
          self->socket_.set_option(tcp::no_delay(true), ignored);
          complete(nullptr);
        });
  }

  void async_command(const std::string& text, std::chrono::milliseconds timeout,
                     std::function<void(std::exception_ptr, std::string)> done) {
    auto self = shared_from_this();
    auto finished = std::make_shared<bool>(false);
    auto complete = [self, finished, done](std::exception_ptr error, std::string reply) {
      if (*finished) return;
      *finished = true;
      self->timer_.cancel();
      done(error, std::move(reply));
    };
    if (!socket_.is_open()) {
      complete(std::make_exception_ptr(ConnectionLost("not connected")), {});
      return;
    }
    timer_.expires_after(timeout);
    timer_.async_wait([self, complete, timeout](const boost::system::error_code& e) {
      if (e) return;
      // The reply may still come; the connection is out of step now, so drop it.
      self->close();
      complete(std::make_exception_ptr(TimeoutError(fmt::format("no reply within {} ms", timeout.count()))),
               {});
    });
    auto out = std::make_shared<std::string>(text + kTerminator);
    boost::asio::async_write(socket_, boost::asio::buffer(*out),
                             [self, out, complete](const boost::system::error_code& e, std::size_t) {
                               if (e == boost::asio::error::operation_aborted) return;
                               if (e) {
                                 self->close();
                                 complete(lost("send", e), {});
                                 return;
                               }
                               boost::asio::async_read_until(
                                   self->socket_, boost::asio::dynamic_buffer(self->buffer_), kTerminator,
                                   [self, complete](const boost::system::error_code& e2, std::size_t n) {
                                     if (e2 == boost::asio::error::operation_aborted) return;
                                     if (e2) {
                                       self->close();
                                       complete(lost("receive", e2), {});
                                       return;
                                     }
                                     std::string reply = self->buffer_.substr(0, n - 1);
                                     self->buffer_.erase(0, n);
                                     complete(nullptr, std::move(reply));
                                   });
                             });
  }

  void close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    buffer_.clear();
  }

 private:
  tcp::socket socket_;
  boost::asio::steady_timer timer_;
  std::string buffer_;
};

// ---- free functions ----

std::size_t StatusLayout::words() const {
  std::size_t n = magic_word ? *magic_word + 1 : 0;
  for (const auto& [name, index] : fields) n = std::max<std::size_t>(n, index + 1);
  return n;
}

std::string tcl_quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\\' || c == '"' || c == '$' || c == '[' || c == ']') out += '\\';
    out += c;
  }
  out += '"';
  return out;
}

std::string wrap_capture(std::string_view cmd) {
  return fmt::format("format \"%d %s\" [catch {{capture {}}} otarig_result] $otarig_result", tcl_quote(cmd));
}

std::vector<std::uint32_t> parse_read_memory(std::string_view reply, std::size_t count) {
  std::vector<std::uint32_t> out;
  for (auto token : split_ws(reply)) {
    auto word = parse_word(token, 10);
    if (!word)
      throw BenchError(fmt::format("read_memory answered '{}': '{}' is not a 32-bit word", reply, token));
    out.push_back(*word);
  }
  if (out.size() != count) {
    throw BenchError(
        fmt::format("read_memory answered {} words, {} were asked for: '{}'", out.size(), count, reply));
  }
  return out;
}

std::vector<std::uint32_t> parse_mdw(std::string_view output, std::size_t count) {
  std::vector<std::uint32_t> out;
  std::istringstream lines{std::string(output)};
  std::string line;
  while (std::getline(lines, line) && out.size() < count) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto address = std::string_view(line).substr(0, colon);
    while (!address.empty() && std::isspace(static_cast<unsigned char>(address.front())))
      address.remove_prefix(1);
    if (!parse_word(address, 16)) continue;  // not a dump line
    for (auto token : split_ws(std::string_view(line).substr(colon + 1))) {
      auto word = parse_word(token, 16);
      if (!word) throw BenchError(fmt::format("mdw printed '{}': '{}' is not a 32-bit word", line, token));
      if (out.size() < count) out.push_back(*word);
    }
  }
  if (out.size() != count) {
    throw BenchError(fmt::format("mdw printed {} words, {} were asked for: '{}'", out.size(), count, output));
  }
  return out;
}

std::uint16_t free_loopback_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::system_error(errno, std::generic_category(), "bind 127.0.0.1:0");
  }
  socklen_t len = sizeof addr;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::system_error(errno, std::generic_category(), "getsockname");
  }
  return ntohs(addr.sin_port);
}

// ---- OpenOcdProbe ----

OpenOcdProbe::OpenOcdProbe(std::shared_ptr<BenchIo> io, OpenOcdConfig config, Clock* clock)
    : io_(std::move(io)), config_(std::move(config)), clock_(clock != nullptr ? *clock : steady()) {
  if (config_.launch) {
    if (config_.launch->log_file.empty()) {
      auto pattern = (std::filesystem::temp_directory_path() / "otarig-openocd-XXXXXX.log").string();
      int fd = ::mkstemps(pattern.data(), 4);
      if (fd < 0) throw std::system_error(errno, std::generic_category(), "create the OpenOCD log file");
      ::close(fd);
      log_file_ = pattern;
      own_log_file_ = true;
    } else {
      log_file_ = config_.launch->log_file;
    }
    try {
      start_server();
    } catch (...) {
      if (own_log_file_) remove_log_file(log_file_);
      throw;
    }
  } else {
    port_ = config_.port;
    try {
      connect(kConnectTimeout);
    } catch (const std::exception& e) {
      throw BenchError(
          fmt::format("{}: attach to OpenOCD at {}:{}: {}", config_.device, config_.host, port_, e.what()));
    }
  }
}

OpenOcdProbe::~OpenOcdProbe() {
  try {
    stop();
  } catch (...) {
  }
  if (own_log_file_) remove_log_file(log_file_);
}

void OpenOcdProbe::connect(std::chrono::milliseconds timeout) {
  auto conn = std::make_shared<Connection>(io_->context());
  io_->call("openocd connect", timeout, [conn, host = config_.host, port = port_, timeout](Done done) {
    conn->async_connect(host, port, timeout, std::move(done));
  });
  conn_ = std::move(conn);
}

void OpenOcdProbe::start_server() {
  const auto& launch = *config_.launch;
  std::string last_failure;
  for (int attempt = 0; attempt < 3; ++attempt) {
    port_ = free_loopback_port();
    CommandSpec cmd{{launch.executable}};
    for (const auto& dir : launch.search_dirs) cmd.argv.insert(cmd.argv.end(), {"-s", dir});
    cmd.argv.insert(cmd.argv.end(), {"-c", "bindto 127.0.0.1", "-c", fmt::format("tcl_port {}", port_), "-c",
                                     "telnet_port disabled", "-c", "gdb_port disabled"});
    for (const auto& file : launch.config_files) cmd.argv.insert(cmd.argv.end(), {"-f", file});
    for (const auto& c : launch.commands) cmd.argv.insert(cmd.argv.end(), {"-c", c});
    if (launch.init) cmd.argv.insert(cmd.argv.end(), {"-c", "init"});

    {
      std::ofstream log(log_file_, std::ios::app);
      log << "---- otarig: " << cmd.text() << "\n";
    }
    try {
      server_ = ChildProcess::spawn(cmd, {.capture_output = false, .output_file = log_file_});
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: start OpenOCD: {}", config_.device, e.what()));
    }

    const auto deadline = clock_.now() + launch.startup_timeout;
    for (;;) {
      if (auto status = server_.try_reap()) {
        auto tail = log_tail(200);
        last_failure = fmt::format("OpenOCD exited during start-up with {}:\n{}", status->describe(),
                                   startup_report(tail));
        bool port_taken = tail.find("ouldn't bind") != std::string::npos ||
                          tail.find("Address already in use") != std::string::npos;
        if (port_taken) break;  // another program took the port in between: pick another
        throw BenchError(fmt::format("{}: {}", config_.device, last_failure));
      }
      try {
        connect(std::chrono::milliseconds(500));
        return;
      } catch (const ConnectionLost&) {
      } catch (const TimeoutError&) {
      }
      if (clock_.now() > deadline) {
        kill_server();
        throw BenchError(fmt::format("{}: OpenOCD did not open its TCL port {} within {} ms:\n{}",
                                     config_.device, port_, launch.startup_timeout.count(),
                                     startup_report(log_tail(200))));
      }
      // OpenOCD starts in real time, so the pause between attempts is real;
      // a manual clock is moved on by it so the deadline still comes.
      io_->wait(kStartupPoll);
      if (clock_.is_manual()) clock_.advance(kStartupPoll);
    }
  }
  throw BenchError(fmt::format("{}: {}", config_.device, last_failure));
}

void OpenOcdProbe::kill_server() {
  if (server_.valid()) server_.kill_and_reap();
}

void OpenOcdProbe::recover(const std::string& reason) {
  if (auto conn = std::exchange(conn_, nullptr)) io_->run("openocd close", [conn] { conn->close(); });
  if (!config_.launch) {
    try {
      connect(kConnectTimeout);
    } catch (const std::exception& e) {
      throw BenchError(fmt::format("{}: connection to OpenOCD at {}:{} lost ({}) and not regained: {}",
                                   config_.device, config_.host, port_, reason, e.what()));
    }
    return;
  }
  if (server_.valid() && !server_.try_reap()) {
    try {
      connect(kConnectTimeout);  // the server is alive: only the connection went
      return;
    } catch (const std::exception&) {
      kill_server();
    }
  }
  ++restarts_;
  start_server();
}

std::string OpenOcdProbe::transact(const std::string& text, std::chrono::milliseconds timeout,
                                   std::string_view what) {
  std::lock_guard lock(mutex_);
  if (stopped_) throw BenchError(fmt::format("{}: {}: the probe was stopped", config_.device, what));
  std::string first_failure;
  for (int attempt = 0;; ++attempt) {
    try {
      if (!conn_) connect(kConnectTimeout);
      auto conn = conn_;
      return io_->call_value<std::string>("openocd command", timeout, [conn, text, timeout](auto done) {
        conn->async_command(text, timeout, std::move(done));
      });
    } catch (const ConnectionLost& e) {
      if (attempt > 0) {
        throw BenchError(fmt::format("{}: '{}': connection to OpenOCD lost ({}), and again after {}: {}",
                                     config_.device, what, first_failure,
                                     config_.launch ? "restarting it" : "reconnecting", e.what()));
      }
      first_failure = e.what();
      recover(first_failure);
    } catch (const TimeoutError& e) {
      conn_.reset();  // out of step: the next command connects afresh
      throw TimeoutError(fmt::format("{}: '{}': {}", config_.device, what, e.what()));
    }
  }
}

std::string OpenOcdProbe::checked(std::string_view cmd, std::chrono::milliseconds timeout) {
  auto reply = transact(wrap_capture(cmd), timeout, cmd);
  // "CODE OUTPUT": the code catch returned (0 = success), then the output or the error.
  int code = 0;
  auto [end, ec] = std::from_chars(reply.data(), reply.data() + reply.size(), code);
  if (ec != std::errc() || (end != reply.data() + reply.size() && *end != ' ')) {
    throw BenchError(
        fmt::format("{}: OpenOCD command '{}': unexpected reply '{}'", config_.device, cmd, reply));
  }
  std::string text = end == reply.data() + reply.size() ? std::string{} : std::string(end + 1);
  if (code == 0) return text;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  // OpenOCD reports some failures (an argument error, for one) as a bare error code.
  if (text.empty()) text = fmt::format("error code {} without a message; see OpenOCD's output", code);
  throw BenchError(fmt::format("{}: OpenOCD command '{}' failed: {}", config_.device, cmd, text));
}

std::string OpenOcdProbe::command(std::string_view cmd, std::chrono::milliseconds timeout) {
  return checked(cmd, timeout);
}

std::string OpenOcdProbe::raw(std::string_view tcl, std::chrono::milliseconds timeout) {
  return transact(std::string(tcl), timeout, tcl);
}

std::vector<std::uint32_t> OpenOcdProbe::read_words(std::uint64_t address, std::size_t count) {
  if (count == 0) return {};
  if (!use_mdw_) {
    try {
      auto reply = checked(fmt::format("read_memory 0x{:x} 32 {}", address, count), config_.command_timeout);
      return parse_read_memory(reply, count);
    } catch (const BenchError& e) {
      if (std::string_view(e.what()).find("invalid command name \"read_memory\"") == std::string_view::npos)
        throw;
      use_mdw_ = true;  // OpenOCD before 0.12
    }
  }
  auto output = checked(fmt::format("mdw 0x{:x} {}", address, count), config_.command_timeout);
  return parse_mdw(output, count);
}

void OpenOcdProbe::reset(ResetMode mode) {
  const char* name = mode == ResetMode::run ? "run" : mode == ResetMode::halt ? "halt" : "init";
  checked(fmt::format("reset {}", name), config_.command_timeout);
}

void OpenOcdProbe::halt() { checked("halt", config_.command_timeout); }
void OpenOcdProbe::resume() { checked("resume", config_.command_timeout); }

void OpenOcdProbe::program(const std::filesystem::path& image, std::optional<std::uint64_t> address,
                           bool verify, bool reset) {
  std::string cmd = "program " + braced(image);
  if (verify) cmd += " verify";
  if (reset) cmd += " reset";
  if (address) cmd += fmt::format(" 0x{:x}", *address);
  checked(cmd, config_.program_timeout);
}

void OpenOcdProbe::flash_write_image(const std::filesystem::path& image, std::uint64_t offset, bool erase) {
  checked(fmt::format("flash write_image {}{} 0x{:x}", erase ? "erase " : "", braced(image), offset),
          config_.program_timeout);
}

std::map<std::string, std::uint32_t> OpenOcdProbe::read_status() {
  if (!config_.status)
    throw BenchError(fmt::format("{}: the profile gives no status struct", config_.device));
  const auto& layout = *config_.status;
  auto words = read_words(layout.address, layout.words());
  if (layout.magic_word && words[*layout.magic_word] != layout.magic) {
    throw BenchError(fmt::format("{}: status struct at 0x{:x}: word {} is 0x{:08x}, expected magic 0x{:08x}",
                                 config_.device, layout.address, *layout.magic_word,
                                 words[*layout.magic_word], layout.magic));
  }
  std::map<std::string, std::uint32_t> out;
  for (const auto& [name, index] : layout.fields) out[name] = words[index];
  return out;
}

std::string OpenOcdProbe::version() {
  auto v = checked("version", config_.command_timeout);
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

void OpenOcdProbe::stop() {
  std::lock_guard lock(mutex_);
  if (stopped_) return;
  stopped_ = true;
  if (config_.launch && server_.valid() && !server_.try_reap()) {
    if (conn_) {
      try {
        auto conn = conn_;
        io_->call_value<std::string>("openocd shutdown", kShutdownGrace, [conn](auto done) {
          conn->async_command("shutdown", kShutdownGrace, std::move(done));
        });
      } catch (...) {
        // It may close the connection before it answers.
      }
    }
    auto exited = std::make_shared<bool>(false);
    try {
      io_->call("openocd exit", kShutdownGrace, [this, exited](Done done) {
        async_wait_exit(io_->context(), server_, kShutdownGrace, [exited, done](std::optional<ExitStatus> s) {
          *exited = s.has_value();
          done(nullptr);
        });
      });
    } catch (...) {
    }
    if (!*exited) kill_server();
  }
  if (auto conn = std::exchange(conn_, nullptr)) io_->run("openocd close", [conn] { conn->close(); });
}

std::optional<pid_t> OpenOcdProbe::server_pid() const {
  if (!server_.valid() || server_.status() || stopped_) return std::nullopt;
  return server_.pid();
}

std::string OpenOcdProbe::log_tail(std::size_t lines) const {
  if (log_file_.empty()) return {};
  std::ifstream in(log_file_);
  std::vector<std::string> all;
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("---- otarig: ", 0) == 0) all.clear();  // only the latest start
    all.push_back(line);
  }
  std::string out;
  for (std::size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += all[i] + "\n";
  return out;
}

}  // namespace otarig::drivers::bench
