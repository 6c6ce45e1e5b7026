#include <fcntl.h>
#include <fmt/format.h>
#include <re2/re2.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <system_error>

#include "otarig/drivers/bench/console.hpp"
#include "otarig/core/errors.hpp"

namespace otarig::drivers::bench {
namespace {

const Clock& steady() {
  static const SteadyClock clock;
  return clock;
}

class FdConnection final : public ConsoleConnection {
 public:
  explicit FdConnection(UniqueFd fd) : fd_(std::move(fd)) {}
  int fd() const override { return fd_.get(); }

 private:
  UniqueFd fd_;
};

speed_t speed_constant(unsigned baud) {
  switch (baud) {
    case 9600:
      return B9600;
    case 19200:
      return B19200;
    case 38400:
      return B38400;
    case 57600:
      return B57600;
    case 115200:
      return B115200;
    case 230400:
      return B230400;
    case 460800:
      return B460800;
    case 921600:
      return B921600;
    case 1000000:
      return B1000000;
    case 1500000:
      return B1500000;
    case 2000000:
      return B2000000;
    case 3000000:
      return B3000000;
    default:
      throw std::system_error(EINVAL, std::generic_category(), fmt::format("unsupported baud rate {}", baud));
  }
}

}  // namespace

// ---- Transcript ----

std::vector<TranscriptEntry> Transcript::entries() const {
  std::lock_guard lock(mutex_);
  std::vector<TranscriptEntry> out(entries_.begin(), entries_.end());
  if (partial_) out.push_back(*partial_);
  return out;
}

std::string Transcript::text() const {
  std::lock_guard lock(mutex_);
  std::string out;
  bool first = true;
  auto add = [&](const TranscriptEntry& e) {
    if (e.kind != TranscriptEntry::Kind::line) return;
    if (!first) out += '\n';
    out += e.text;
    first = false;
  };
  for (const auto& e : entries_) add(e);
  if (partial_) add(*partial_);
  return out;
}

std::string Transcript::format() const {
  std::string out;
  for (const auto& e : entries()) {
    double seconds = std::chrono::duration<double>(e.at - origin_).count();
    if (e.kind == TranscriptEntry::Kind::event)
      out += fmt::format("[{:>13.6f}] -- {}\n", seconds, e.text);
    else
      out += fmt::format("[{:>13.6f}] {}{}\n", seconds, e.text, e.complete ? "" : " [cut]");
  }
  return out;
}

std::size_t Transcript::line_count() const {
  std::lock_guard lock(mutex_);
  auto n = static_cast<std::size_t>(std::count_if(
      entries_.begin(), entries_.end(), [](const auto& e) { return e.kind == TranscriptEntry::Kind::line; }));
  return n + (partial_ ? 1 : 0);
}

void Transcript::clear() {
  std::lock_guard lock(mutex_);
  cleared_ += entries_.size();
  entries_.clear();
  held_bytes_ = 0;
  partial_.reset();
}

ConsoleRecord Transcript::take_since(std::uint64_t& next) const {
  std::lock_guard lock(mutex_);
  ConsoleRecord record;
  const auto first = next > cleared_ ? static_cast<std::size_t>(next - cleared_) : std::size_t{0};
  if (first < entries_.size())
    record.entries.assign(entries_.begin() + static_cast<std::ptrdiff_t>(first), entries_.end());
  next = cleared_ + entries_.size();
  record.arriving = partial_;
  record.dropped_lines = std::exchange(dropped_lines_, 0);
  record.dropped_bytes = std::exchange(dropped_bytes_, 0);
  return record;
}

void Transcript::add(TranscriptEntry entry) {
  held_bytes_ += entry.text.size() + kConsoleLineOverheadBytes;
  entries_.push_back(std::move(entry));
  // A device flooding a console nobody clears: the oldest entries go,
  // counted, down to half the limit.
  if (held_bytes_ <= kConsolePendingMaxBytes) return;
  while (!entries_.empty() && held_bytes_ > kConsolePendingMaxBytes / 2) {
    const auto& e = entries_.front();
    held_bytes_ -= e.text.size() + kConsoleLineOverheadBytes;
    if (e.kind == TranscriptEntry::Kind::line) {
      ++dropped_lines_;
      dropped_bytes_ += e.text.size() + e.cut;
    }
    entries_.pop_front();
    ++cleared_;
  }
}

void Transcript::add_line(Clock::duration at, std::string text, bool complete) {
  std::lock_guard lock(mutex_);
  add({at, TranscriptEntry::Kind::line, std::move(text), complete});
  partial_.reset();
}

void Transcript::add_event(Clock::duration at, std::string text, std::string event) {
  std::lock_guard lock(mutex_);
  add({at, TranscriptEntry::Kind::event, std::move(text), true, std::move(event)});
}

void Transcript::set_partial(std::optional<TranscriptEntry> partial) {
  std::lock_guard lock(mutex_);
  partial_ = std::move(partial);
}

// ---- sources ----

TtyPathSource::TtyPathSource(std::filesystem::path path, unsigned baud)
    : path_(std::move(path)), baud_(baud) {
  if (baud_ != 0) speed_constant(baud_);  // reject an unsupported speed early
}

std::unique_ptr<ConsoleConnection> TtyPathSource::open() {
  UniqueFd fd(::open(path_.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) throw std::system_error(errno, std::generic_category(), fmt::format("open {}", path_.string()));
  if (::isatty(fd.get())) {
    termios tio{};
    if (::tcgetattr(fd.get(), &tio) != 0)
      throw std::system_error(errno, std::generic_category(), "tcgetattr");
    ::cfmakeraw(&tio);
    tio.c_cflag |= CLOCAL | CREAD;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (baud_ != 0) {
      ::cfsetispeed(&tio, speed_constant(baud_));
      ::cfsetospeed(&tio, speed_constant(baud_));
    }
    if (::tcsetattr(fd.get(), TCSANOW, &tio) != 0) {
      throw std::system_error(errno, std::generic_category(), "tcsetattr");
    }
  }
  return std::make_unique<FdConnection>(std::move(fd));
}

std::string TtyPathSource::describe() const { return "tty " + path_.string(); }

FdSource::FdSource(UniqueFd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}

std::unique_ptr<ConsoleConnection> FdSource::open() {
  if (!fd_)
    throw std::system_error(EBADF, std::generic_category(), name_ + " is closed and cannot be reopened");
  return std::make_unique<FdConnection>(std::move(fd_));
}

std::string FdSource::describe() const { return name_; }

// ---- ConsoleReader ----

struct ConsoleReader::Impl : std::enable_shared_from_this<ConsoleReader::Impl> {
  using descriptor = boost::asio::posix::stream_descriptor;

  Impl(boost::asio::io_context& context, std::unique_ptr<ConsoleSource> src, ConsoleReaderOptions opts,
       const Clock& clk)
      : io(context),
        source(std::move(src)),
        options(std::move(opts)),
        clock(clk),
        transcript(clk.now()),
        rd(context),
        wr(context),
        reconnect_timer(context) {}

  struct Trigger {
    TriggerId id = 0;
    std::shared_ptr<RE2> re;
    TriggerCallback callback;
    bool once = false;
    std::size_t offset = 0;  // where matching resumes in the current line
  };
  struct ReadWaiter {
    std::shared_ptr<boost::asio::steady_timer> timer;
    std::function<void(std::exception_ptr, std::string)> done;
  };

  boost::asio::io_context& io;
  std::unique_ptr<ConsoleSource> source;
  ConsoleReaderOptions options;
  const Clock& clock;
  Transcript transcript;

  std::shared_ptr<ConsoleConnection> conn;
  descriptor rd, wr;
  boost::asio::steady_timer reconnect_timer;
  std::array<char, 4096> buffer{};
  bool running = false;
  std::atomic<bool> is_connected{false};
  std::atomic<std::uint64_t> reconnect_count{0};

  std::string line;
  Clock::duration line_at{0};
  bool line_open = false;
  std::uint64_t line_number = 0;

  std::vector<Trigger> triggers;
  std::string pending;
  std::vector<std::shared_ptr<ReadWaiter>> read_waiters;
  std::vector<std::function<void()>> connect_waiters;
  OpQueue writes;

  std::string name() const { return fmt::format("{} ({})", options.device, source->describe()); }

  // -- connection --

  void attach(std::unique_ptr<ConsoleConnection> c) {
    auto read_fd = UniqueFd::duplicate(c->fd());
    auto write_fd = UniqueFd::duplicate(c->fd());
    rd.assign(read_fd.release());
    wr.assign(write_fd.release());
    conn = std::move(c);
    is_connected = true;
    read_more();
    auto waiters = std::move(connect_waiters);
    connect_waiters.clear();
    for (auto& w : waiters) w();
  }

  void detach() {
    boost::system::error_code ignored;
    rd.close(ignored);
    wr.close(ignored);
    conn.reset();
    is_connected = false;
  }

  void open_first() {
    if (running) return;  // already started
    running = true;
    try {
      attach(source->open());
    } catch (const std::exception& e) {
      running = false;
      throw BenchError(fmt::format("{}: open: {}", name(), e.what()));
    }
  }

  void stop() {
    running = false;
    reconnect_timer.cancel();
    detach();
    connect_waiters.clear();
    auto waiters = std::move(read_waiters);
    read_waiters.clear();
    for (auto& w : waiters) {
      w->timer->cancel();
      w->done(nullptr, take_pending());
    }
  }

  void read_more() {
    rd.async_read_some(boost::asio::buffer(buffer),
                       [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                         if (!self->running || ec == boost::asio::error::operation_aborted) return;
                         if (!ec) {
                           self->on_bytes(std::string_view(self->buffer.data(), n));
                           if (self->running && self->is_connected) self->read_more();
                           return;
                         }
                         self->lost(ec == boost::asio::error::eof ? "end of file" : ec.message());
                       });
  }

  void lost(const std::string& reason) {
    auto now = clock.now();
    if (line_open && !line.empty())
      transcript.add_line(line_at, line, false);
    else
      transcript.set_partial(std::nullopt);
    line_open = false;
    line.clear();
    // Recorded before the connection goes, so whoever sees connected() false
    // finds the event.
    transcript.add_event(now, fmt::format("{} disconnected: {}", options.device, reason), "disconnected");
    detach();
    if (source->reopenable()) schedule_reconnect();
  }

  void schedule_reconnect() {
    reconnect_timer.expires_after(options.reconnect_interval);
    reconnect_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || !self->running) return;
      std::unique_ptr<ConsoleConnection> back;
      try {
        back = self->source->open();
      } catch (const std::exception&) {
        self->schedule_reconnect();  // not back yet
        return;
      }
      // Event, then count, then connected: whoever sees connected() true
      // finds the count, and whoever sees the count finds the event.
      self->transcript.add_event(
          self->clock.now(),
          fmt::format("{} reconnected: {}", self->options.device, self->source->describe()), "reconnected");
      ++self->reconnect_count;
      self->attach(std::move(back));
    });
  }

  // -- input --

  void on_bytes(std::string_view data) {
    auto now = clock.now();
    for (char c : data) {
      if (!line_open) begin_line(now);
      if (c == '\r') continue;
      if (c == '\n') {
        end_line(now, true);
        continue;
      }
      line.push_back(c);
      if (line.size() >= options.max_line) end_line(now, false);
    }
    if (line_open) {
      match(line, now);
      transcript.set_partial(TranscriptEntry{line_at, TranscriptEntry::Kind::line, line, false});
    }

    pending.append(data);
    if (pending.size() > options.pending_limit) pending.erase(0, pending.size() - options.pending_limit);
    if (!read_waiters.empty()) {
      auto waiter = read_waiters.front();
      read_waiters.erase(read_waiters.begin());
      waiter->timer->cancel();
      waiter->done(nullptr, take_pending());
    }
  }

  void begin_line(Clock::duration now) {
    line_open = true;
    line_at = now;
    line.clear();
    ++line_number;
    for (auto& t : triggers) t.offset = 0;
  }

  void end_line(Clock::duration now, bool newline) {
    if (newline) {
      line.push_back('\n');
      match(line, now);
      line.pop_back();
    } else {
      match(line, now);
    }
    transcript.add_line(line_at, std::move(line), true);
    line.clear();
    line_open = false;
  }

  Trigger* find_trigger(TriggerId id) {
    auto it = std::find_if(triggers.begin(), triggers.end(), [id](const Trigger& t) { return t.id == id; });
    return it == triggers.end() ? nullptr : &*it;
  }

  void match(const std::string& text, Clock::duration now) {
    std::vector<TriggerId> ids;
    ids.reserve(triggers.size());
    for (const auto& t : triggers) ids.push_back(t.id);
    for (auto id : ids) {
      for (;;) {
        Trigger* t = find_trigger(id);  // a callback may have removed it
        if (t == nullptr || t->offset > text.size()) break;
        const int groups = t->re->NumberOfCapturingGroups();
        std::vector<re2::StringPiece> sub(static_cast<std::size_t>(groups) + 1);
        if (!t->re->Match(text, t->offset, text.size(), RE2::UNANCHORED, sub.data(), groups + 1)) break;
        auto end = static_cast<std::size_t>(sub[0].data() - text.data()) + sub[0].size();
        t->offset = sub[0].empty() ? end + 1 : end;

        TriggerMatch m;
        m.line = text;
        if (!m.line.empty() && m.line.back() == '\n') m.line.pop_back();
        m.text = std::string(sub[0]);
        for (int i = 1; i <= groups; ++i) m.captures.emplace_back(sub[static_cast<std::size_t>(i)]);
        for (const auto& [group, index] : t->re->NamedCapturingGroups()) {
          m.groups[group] = std::string(sub[static_cast<std::size_t>(index)]);
        }
        m.at = now;
        m.line_number = line_number;

        auto callback = t->callback;  // the trigger may go away inside the call
        bool once = t->once;
        if (once) remove_trigger(id);
        try {
          callback(m);
        } catch (const std::exception& e) {
          transcript.add_event(clock.now(), fmt::format("trigger callback failed: {}", e.what()),
                               "trigger-failed");
        }
        if (once) break;
      }
    }
  }

  void remove_trigger(TriggerId id) {
    triggers.erase(
        std::remove_if(triggers.begin(), triggers.end(), [id](const Trigger& t) { return t.id == id; }),
        triggers.end());
  }

  std::string take_pending() { return std::exchange(pending, std::string{}); }

  void async_read(std::chrono::milliseconds timeout,
                  std::function<void(std::exception_ptr, std::string)> done) {
    if (!pending.empty() || timeout.count() <= 0 || !running) {
      done(nullptr, take_pending());
      return;
    }
    auto waiter = std::make_shared<ReadWaiter>();
    waiter->timer = std::make_shared<boost::asio::steady_timer>(io, timeout);
    waiter->done = std::move(done);
    read_waiters.push_back(waiter);
    waiter->timer->async_wait([self = shared_from_this(), waiter](const boost::system::error_code& ec) {
      if (ec) return;
      auto it = std::find(self->read_waiters.begin(), self->read_waiters.end(), waiter);
      if (it == self->read_waiters.end()) return;
      self->read_waiters.erase(it);
      waiter->done(nullptr, std::string{});
    });
  }

  // -- output --

  void write_now(std::shared_ptr<std::string> data, Done done) {
    auto finished = std::make_shared<bool>(false);
    auto timer = std::make_shared<boost::asio::steady_timer>(io, options.write_timeout);
    auto complete = [finished, timer, done](std::exception_ptr error) {
      if (*finished) return;
      *finished = true;
      timer->cancel();
      done(error);
    };
    auto self = shared_from_this();
    timer->async_wait([self, complete, finished](const boost::system::error_code& ec) {
      if (ec || *finished) return;
      boost::system::error_code ignored;
      self->wr.cancel(ignored);
      complete(std::make_exception_ptr(TimeoutError(fmt::format(
          "{}: write did not finish within {} ms{}", self->name(), self->options.write_timeout.count(),
          self->is_connected ? "" : " (device disconnected)"))));
    });
    auto start = [self, data, complete, finished] {
      if (*finished) return;
      boost::asio::async_write(self->wr, boost::asio::buffer(*data),
                               [self, data, complete](const boost::system::error_code& ec, std::size_t) {
                                 if (ec == boost::asio::error::operation_aborted) return;  // timer or stop
                                 if (ec) {
                                   complete(std::make_exception_ptr(
                                       BenchError(fmt::format("{}: write: {}", self->name(), ec.message()))));
                                 } else {
                                   complete(nullptr);
                                 }
                               });
    };
    if (is_connected)
      start();
    else if (!running)
      complete(std::make_exception_ptr(BenchError(fmt::format("{}: write: console is stopped", name()))));
    else
      connect_waiters.push_back(start);
  }
};

ConsoleReader::ConsoleReader(std::shared_ptr<BenchIo> io, std::unique_ptr<ConsoleSource> source,
                             ConsoleReaderOptions options, const Clock* clock)
    : io_(std::move(io)),
      impl_(std::make_shared<Impl>(io_->context(), std::move(source), std::move(options),
                                   clock != nullptr ? *clock : steady())) {}

ConsoleReader::~ConsoleReader() {
  try {
    if (io_->on_io_thread())
      impl_->stop();
    else
      stop();
  } catch (...) {
  }
}

void ConsoleReader::start() {
  io_->call("console open", std::chrono::milliseconds(0), [impl = impl_](Done done) {
    impl->open_first();
    done(nullptr);
  });
}

void ConsoleReader::stop() {
  io_->run("console stop", [impl = impl_] { impl->stop(); });
}

TriggerId ConsoleReader::add_trigger(std::string_view pattern, TriggerCallback callback, bool once) {
  RE2::Options opts;
  opts.set_log_errors(false);
  auto re = std::make_shared<RE2>(re2::StringPiece(pattern.data(), pattern.size()), opts);
  if (!re->ok()) {
    throw InputError(
        fmt::format("{}: trigger pattern '{}': {}", impl_->options.device, pattern, re->error()));
  }
  static std::atomic<TriggerId> next_id{1};
  TriggerId id = next_id++;
  auto add = [impl = impl_, id, re, callback = std::move(callback), once]() mutable {
    impl->triggers.push_back({id, std::move(re), std::move(callback), once, 0});
  };
  if (io_->on_io_thread())
    add();
  else
    io_->run("add trigger", std::move(add));
  return id;
}

void ConsoleReader::remove_trigger(TriggerId id) {
  if (io_->on_io_thread())
    impl_->remove_trigger(id);
  else
    io_->run("remove trigger", [impl = impl_, id] { impl->remove_trigger(id); });
}

void ConsoleReader::write(std::string_view bytes) {
  io_->call("console write", impl_->options.write_timeout,
            [this, data = std::string(bytes)](Done done) mutable {
              async_write(std::move(data), std::move(done));
            });
}

void ConsoleReader::async_write(std::string bytes, Done done) {
  auto data = std::make_shared<std::string>(std::move(bytes));
  impl_->writes.push([impl = impl_, data](Done d) { impl->write_now(data, std::move(d)); }, std::move(done));
}

std::string ConsoleReader::read(std::chrono::milliseconds timeout) {
  return io_->call_value<std::string>("console read", timeout, [impl = impl_, timeout](auto done) {
    impl->async_read(timeout, std::move(done));
  });
}

ConsoleRecord ConsoleReader::take_record() {
  std::lock_guard lock(taken_mutex_);
  return impl_->transcript.take_since(taken_);
}

const Transcript& ConsoleReader::transcript() const { return impl_->transcript; }
bool ConsoleReader::connected() const { return impl_->is_connected; }
std::uint64_t ConsoleReader::reconnects() const { return impl_->reconnect_count; }
std::string ConsoleReader::describe() const { return impl_->name(); }

void ConsoleReader::with_connection(std::string_view what, std::chrono::milliseconds limit,
                                    std::function<void(std::shared_ptr<ConsoleConnection>, Done)> fn) {
  io_->call(what, limit, [impl = impl_, what = std::string(what), fn = std::move(fn)](Done done) {
    if (!impl->conn) throw BenchError(fmt::format("{}: {}: the device is disconnected", impl->name(), what));
    fn(impl->conn, std::move(done));
  });
}

}  // namespace otarig::drivers::bench
