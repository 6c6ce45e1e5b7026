// The operation log: entries in memory (or streamed to a file), payloads in a
// data file. See oplog.hpp.
#include "otarig/drivers/storage/oplog.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace otarig::drivers::storage {

namespace {

constexpr std::string_view kMagic = "OTASLOG1";

constexpr std::array<std::pair<OpKind, std::string_view>, 15> kKinds{{
    {OpKind::write, "write"},
    {OpKind::truncate, "truncate"},
    {OpKind::fallocate, "fallocate"},
    {OpKind::create, "create"},
    {OpKind::mkdir, "mkdir"},
    {OpKind::rmdir, "rmdir"},
    {OpKind::rename, "rename"},
    {OpKind::link, "link"},
    {OpKind::symlink, "symlink"},
    {OpKind::unlink, "unlink"},
    {OpKind::chmod, "chmod"},
    {OpKind::fsync, "fsync"},
    {OpKind::fdatasync, "fdatasync"},
    {OpKind::fsync_dir, "fsync_dir"},
    {OpKind::sync, "sync"},
}};

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

void write_all(int fd, const void* data, std::size_t size, const std::string& what) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, what);
    }
    p += n;
    size -= static_cast<std::size_t>(n);
  }
}

void pread_all(int fd, void* data, std::size_t size, std::uint64_t offset, const std::string& what) {
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(errno, what);
    }
    if (n == 0) throw std::runtime_error(what + ": unexpected end of file");
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
}

template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

template <typename T>
T get(const char*& p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return v;
}

// Fixed part of a record after its length field.
constexpr std::size_t kFixed = 8 + 1 + 1 + 2 + 4 + 4 + 8 + 8 + 8 + 8 + 4 + 4;

}  // namespace

std::string_view to_string(OpKind kind) {
  for (const auto& [k, name] : kKinds)
    if (k == kind) return name;
  return "unknown";
}

std::optional<OpKind> parse_op_kind(std::string_view name) {
  for (const auto& [k, n] : kKinds)
    if (n == name) return k;
  return std::nullopt;
}

bool is_barrier(OpKind kind) {
  return kind == OpKind::fsync || kind == OpKind::fdatasync || kind == OpKind::fsync_dir || kind == OpKind::sync;
}

nlohmann::json to_json(const Op& op) {
  nlohmann::json j{{"op", op.index}, {"kind", to_string(op.kind)}};
  if (op.kind != OpKind::sync) j["path"] = op.path;
  switch (op.kind) {
    case OpKind::write:
      j["offset"] = op.offset;
      j["length"] = op.length;
      break;
    case OpKind::truncate:
      j["size"] = op.offset;
      break;
    case OpKind::fallocate:
      j["offset"] = op.offset;
      j["length"] = op.length;
      j["mode"] = op.mode;
      break;
    case OpKind::create:
    case OpKind::mkdir:
    case OpKind::chmod:
      j["mode"] = op.mode;
      break;
    case OpKind::rename:
      j["to"] = op.path2;
      if (op.rename_flags != 0) j["flags"] = op.rename_flags;
      break;
    case OpKind::link:
      j["new"] = op.path2;
      break;
    case OpKind::symlink:
      j["target"] = op.path2;
      break;
    default:
      break;
  }
  if (op.flags & op_flag_o_sync) j["o_sync"] = true;
  if (op.flags & op_flag_o_dsync) j["o_dsync"] = true;
  if (op.flags & op_flag_implied) j["implied"] = true;
  if (op.flags & op_flag_by_handle) j["unlinked_handle_ino"] = op.ino;
  if (op.flags & op_flag_seccomp) {
    j["source"] = "seccomp";
    j["syscall"] = (op.flags & op_flag_syncfs) ? "syncfs" : "sync";
  }
  return j;
}

void encode_op(const Op& op, std::string& out) {
  const auto len = static_cast<std::uint32_t>(kFixed + op.path.size() + op.path2.size());
  put<std::uint32_t>(out, len);
  put<std::uint64_t>(out, op.index);
  put<std::uint8_t>(out, static_cast<std::uint8_t>(op.kind));
  put<std::uint8_t>(out, op.flags);
  put<std::uint16_t>(out, 0);
  put<std::uint32_t>(out, op.mode);
  put<std::uint32_t>(out, op.rename_flags);
  put<std::uint64_t>(out, op.offset);
  put<std::uint64_t>(out, op.length);
  put<std::uint64_t>(out, op.data_offset);
  put<std::uint64_t>(out, op.ino);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(op.path.size()));
  put<std::uint32_t>(out, static_cast<std::uint32_t>(op.path2.size()));
  out += op.path;
  out += op.path2;
}

struct OpLog::Files {
  int data = -1;     // payloads (read/write)
  int entries = -1;  // streamed entries, or -1
  std::string data_name;
  ~Files() {
    if (data >= 0) ::close(data);
    if (entries >= 0) ::close(entries);
  }
};

OpLog::OpLog() : OpLog(std::filesystem::temp_directory_path()) {}

OpLog::OpLog(const std::filesystem::path& spill_dir) : files_(std::make_unique<Files>()) {
  files_->data = ::open(spill_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (files_->data < 0) throw_errno(errno, "operation log: spill file in " + spill_dir.string());
  files_->data_name = "spill file in " + spill_dir.string();
}

OpLog OpLog::streaming(const std::filesystem::path& entries_file, const std::filesystem::path& data_file,
                       bool keep_entries) {
  OpLog log(data_file.parent_path().empty() ? std::filesystem::path(".") : data_file.parent_path());
  ::close(log.files_->data);
  log.files_->data = ::open(data_file.c_str(), O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
  if (log.files_->data < 0) throw_errno(errno, "operation log: " + data_file.string());
  log.files_->data_name = data_file.string();
  log.files_->entries = ::open(entries_file.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_APPEND | O_CLOEXEC, 0600);
  if (log.files_->entries < 0) throw_errno(errno, "operation log: " + entries_file.string());
  write_all(log.files_->entries, kMagic.data(), kMagic.size(), "operation log: " + entries_file.string());
  log.keep_ = keep_entries;
  return log;
}

OpLog OpLog::load(const std::filesystem::path& entries_file, const std::filesystem::path& data_file,
                  std::optional<std::uint64_t> count) {
  std::ifstream in(entries_file, std::ios::binary);
  if (!in) throw std::runtime_error("operation log: cannot read " + entries_file.string());
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.compare(0, kMagic.size(), kMagic) != 0)
    throw std::runtime_error("operation log: " + entries_file.string() + " is not an operation log");
  OpLog log(data_file.parent_path().empty() ? std::filesystem::path(".") : data_file.parent_path());
  ::close(log.files_->data);
  log.files_->data = ::open(data_file.c_str(), O_RDONLY | O_CLOEXEC);
  if (log.files_->data < 0) throw_errno(errno, "operation log: " + data_file.string());
  log.files_->data_name = data_file.string();
  std::size_t pos = kMagic.size();
  while (pos + 4 <= bytes.size() && (!count || log.count_ < *count)) {
    const char* p = bytes.data() + pos;
    auto len = get<std::uint32_t>(p);
    if (len < kFixed || pos + 4 + len > bytes.size()) break;  // a partial trailing entry
    Op op;
    op.index = get<std::uint64_t>(p);
    op.kind = static_cast<OpKind>(get<std::uint8_t>(p));
    op.flags = get<std::uint8_t>(p);
    (void)get<std::uint16_t>(p);
    op.mode = get<std::uint32_t>(p);
    op.rename_flags = get<std::uint32_t>(p);
    op.offset = get<std::uint64_t>(p);
    op.length = get<std::uint64_t>(p);
    op.data_offset = get<std::uint64_t>(p);
    op.ino = get<std::uint64_t>(p);
    auto l1 = get<std::uint32_t>(p);
    auto l2 = get<std::uint32_t>(p);
    if (kFixed + l1 + l2 != len || to_string(op.kind) == "unknown" || op.index != log.count_ + 1)
      throw std::runtime_error("operation log: " + entries_file.string() + ": bad entry " +
                               std::to_string(log.count_ + 1));
    op.path.assign(p, l1);
    op.path2.assign(p + l1, l2);
    if (op.kind == OpKind::write) log.data_end_ = std::max(log.data_end_, op.data_offset + op.length);
    log.ops_.push_back(std::move(op));
    ++log.count_;
    pos += 4 + len;
  }
  if (count && log.count_ < *count)
    throw std::runtime_error("operation log: " + entries_file.string() + " holds " + std::to_string(log.count_) +
                             " entries, " + std::to_string(*count) + " expected");
  return log;
}

OpLog::OpLog(OpLog&&) noexcept = default;
OpLog& OpLog::operator=(OpLog&&) noexcept = default;
OpLog::~OpLog() = default;

std::uint64_t OpLog::append(Op op, std::span<const std::byte> data) {
  op.index = count_ + 1;
  if (op.kind == OpKind::write) {
    op.length = data.size();
    op.data_offset = data_end_;
    std::size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(files_->data, data.data() + done, data.size() - done,
                           static_cast<off_t>(data_end_ + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno(errno, "operation log: " + files_->data_name);
      }
      done += static_cast<std::size_t>(n);
    }
    data_end_ += data.size();
  }
  if (files_->entries >= 0) {
    std::string rec;
    encode_op(op, rec);
    write_all(files_->entries, rec.data(), rec.size(), "operation log entries");
  }
  ++count_;
  if (keep_) ops_.push_back(std::move(op));
  return count_;
}

const Op& OpLog::at(std::uint64_t index) const {
  if (index == 0 || index > ops_.size()) throw std::out_of_range("operation log: no entry " + std::to_string(index));
  return ops_[index - 1];
}

std::vector<std::byte> OpLog::payload(const Op& op) const {
  std::vector<std::byte> out(op.kind == OpKind::write ? op.length : 0);
  read_payload(op, 0, out);
  return out;
}

void OpLog::read_payload(const Op& op, std::uint64_t from, std::span<std::byte> out) const {
  if (out.empty()) return;
  if (op.kind != OpKind::write || from + out.size() > op.length)
    throw std::out_of_range("operation log: entry " + std::to_string(op.index) + " has no such payload range");
  pread_all(files_->data, out.data(), out.size(), op.data_offset + from, "operation log: " + files_->data_name);
}

void OpLog::save(const std::filesystem::path& entries_file, const std::filesystem::path& data_file) const {
  if (ops_.size() != count_) throw std::logic_error("operation log: a streaming writer's log cannot be saved");
  std::string rec(kMagic);
  for (const auto& op : ops_) encode_op(op, rec);
  {
    std::ofstream out(entries_file, std::ios::binary | std::ios::trunc);
    out.write(rec.data(), static_cast<std::streamsize>(rec.size()));
    if (!out) throw std::runtime_error("operation log: cannot write " + entries_file.string());
  }
  int fd = ::open(data_file.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) throw_errno(errno, "operation log: " + data_file.string());
  std::vector<char> buf(1 << 16);
  std::uint64_t off = 0;
  try {
    while (off < data_end_) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), data_end_ - off));
      pread_all(files_->data, buf.data(), n, off, "operation log: " + files_->data_name);
      write_all(fd, buf.data(), n, "operation log: " + data_file.string());
      off += n;
    }
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
}

void OpLog::write_jsonl(const std::filesystem::path& file) const {
  std::ofstream out(file, std::ios::trunc);
  for (const auto& op : ops_) out << to_json(op).dump() << '\n';
  if (!out) throw std::runtime_error("operation log: cannot write " + file.string());
}

}  // namespace otarig::drivers::storage
