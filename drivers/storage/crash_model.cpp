// The crash model: durable state at a cut plus a seeded choice of pending
// operations, materialized into a folder. See crash_model.hpp and
// docs/crash-model.md.
#include "otarig/drivers/storage/crash_model.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <system_error>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace otarig::drivers::storage {

namespace {

constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// A descriptor closed at scope end.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Seeded draws: std::mt19937_64 with a bounded mapping of our own, so the
// same seed gives the same choice on every standard library.
class Draw {
 public:
  explicit Draw(const CrashPoint& p)
      : rng_(splitmix64(splitmix64(p.seed) ^ splitmix64(p.cut * 0x100000001b3ULL + static_cast<std::uint64_t>(p.mode)))) {}
  /// Uniform in [0, bound), bound > 0, by rejection.
  std::uint64_t below(std::uint64_t bound) {
    const std::uint64_t limit = std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % bound;
    for (;;) {
      std::uint64_t r = rng_();
      if (r < limit) return r % bound;
    }
  }
  bool coin() { return (rng_() >> 63) != 0; }

 private:
  std::mt19937_64 rng_;
};

enum class NodeType : std::uint8_t { file, dir, symlink, other };

struct Node {
  NodeType type = NodeType::file;
  bool from_snapshot = false;
  std::string snapshot_rel;  // where its content is in the snapshot
  std::uint32_t mode = 0;
  std::uint64_t rdev = 0;
  std::string link_target;
  std::string first_path;            // its name when it first appeared (for evidence)
  std::vector<std::uint64_t> ops;    // data and metadata ops on it, in order
};

using Dir = std::map<std::string, std::uint32_t>;

enum class Cls : std::uint8_t { none, data, meta, entry_add, entry_remove, rename, exchange, fsync, fdatasync, sync };

struct Res {
  Cls cls = Cls::none;
  std::uint32_t node = kNone;
  std::uint32_t dir = kNone;
  std::string name;
  std::uint32_t dir2 = kNone;
  std::string name2;
  std::uint32_t node2 = kNone;
};

std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    if (j > i) out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

NodeType type_of(std::uint32_t mode) {
  if (S_ISDIR(mode)) return NodeType::dir;
  if (S_ISREG(mode)) return NodeType::file;
  if (S_ISLNK(mode)) return NodeType::symlink;
  return NodeType::other;
}

// Content of a new file from `src` (a snapshot file): reflink, else copy.
void clone_into(int src, int dst, bool try_reflink, const std::string& what) {
  if (try_reflink && ::ioctl(dst, FICLONE, src) == 0) return;
  struct stat st {};
  if (::fstat(src, &st) != 0) throw_errno(what);
  loff_t in = 0, out = 0;
  auto left = static_cast<std::uint64_t>(st.st_size);
  while (left > 0) {
    ssize_t n = ::copy_file_range(src, &in, dst, &out, left, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(what);
    }
    if (n == 0) break;
    left -= static_cast<std::uint64_t>(n);
  }
}

void pwrite_all(int fd, const std::byte* data, std::size_t size, std::uint64_t offset, const std::string& what) {
  while (size > 0) {
    ssize_t n = ::pwrite(fd, data, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(what);
    }
    data += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
}

void remove_children(const std::filesystem::path& dir) {
  for (const auto& e : std::filesystem::directory_iterator(dir)) std::filesystem::remove_all(e.path());
}

nlohmann::json ranges(const std::vector<std::uint64_t>& sorted) {
  nlohmann::json out = nlohmann::json::array();
  for (std::size_t i = 0; i < sorted.size();) {
    std::size_t j = i;
    while (j + 1 < sorted.size() && sorted[j + 1] == sorted[j] + 1) ++j;
    out.push_back({sorted[i], sorted[j]});
    i = j + 1;
  }
  return out;
}

}  // namespace

std::string_view to_string(CrashMode mode) {
  switch (mode) {
    case CrashMode::lost: return "lost";
    case CrashMode::prefix: return "prefix";
    case CrashMode::reorder: return "reorder";
    case CrashMode::torn: return "torn";
  }
  return "unknown";
}

std::optional<CrashMode> parse_crash_mode(std::string_view name) {
  for (auto m : kAllCrashModes)
    if (to_string(m) == name) return m;
  return std::nullopt;
}

namespace {

// The log resolved against the snapshot's namespace as it evolved: which
// node every operation touched, and how (data, metadata, a directory entry,
// a barrier). The crash states are built from it (CrashModel::Impl).
struct ResolvedLog {
  std::filesystem::path snapshot;
  const OpLog* log = nullptr;
  std::vector<Node> nodes;                    // 0 is the root
  std::unordered_map<std::uint32_t, Dir> base;  // the snapshot's directories
  std::vector<Res> res;                       // per op, index - 1
  std::vector<std::uint64_t> unresolved;      // ops naming nothing that existed

  std::uint32_t add_node(Node n) {
    nodes.push_back(std::move(n));
    return static_cast<std::uint32_t>(nodes.size() - 1);
  }

  void scan(int dirfd, std::uint32_t dir_node, const std::string& rel,
            std::unordered_map<std::uint64_t, std::uint32_t>& seen) {
    int dup = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0) throw_errno("crash model: snapshot " + (snapshot / rel).string());
    DIR* d = ::fdopendir(dup);
    if (d == nullptr) {
      ::close(dup);
      throw_errno("crash model: snapshot " + (snapshot / rel).string());
    }
    std::vector<std::string> names;
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    std::sort(names.begin(), names.end());
    Dir& entries = base[dir_node];
    for (const auto& name : names) {
      struct stat st {};
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
        throw_errno("crash model: snapshot " + (snapshot / rel / name).string());
      const std::string child_rel = rel.empty() ? name : rel + "/" + name;
      if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
        auto it = seen.find(static_cast<std::uint64_t>(st.st_ino));
        if (it != seen.end()) {
          entries[name] = it->second;
          continue;
        }
      }
      Node n;
      n.type = type_of(st.st_mode);
      n.from_snapshot = true;
      n.snapshot_rel = child_rel;
      n.mode = static_cast<std::uint32_t>(st.st_mode);
      n.rdev = static_cast<std::uint64_t>(st.st_rdev);
      n.first_path = "/" + child_rel;
      if (n.type == NodeType::symlink) {
        std::string target(static_cast<std::size_t>(st.st_size) + 1, '\0');
        ssize_t len = ::readlinkat(dirfd, name.c_str(), target.data(), target.size());
        if (len < 0) throw_errno("crash model: snapshot " + (snapshot / child_rel).string());
        target.resize(static_cast<std::size_t>(len));
        n.link_target = target;
      }
      const NodeType type = n.type;
      std::uint32_t id = add_node(std::move(n));
      entries[name] = id;
      if (type != NodeType::dir) {
        seen[static_cast<std::uint64_t>(st.st_ino)] = id;
      } else {
        base[id];
        int sub = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (sub < 0) throw_errno("crash model: snapshot " + (snapshot / child_rel).string());
        Fd guard(sub);
        scan(sub, id, child_rel, seen);
      }
    }
    ::closedir(d);
  }

  // Resolves every op against the namespace as it evolved.
  void resolve() {
    std::unordered_map<std::uint32_t, Dir> live = base;
    std::unordered_map<std::uint64_t, std::uint32_t> by_ino;
    struct Where {
      std::uint32_t dir = kNone;
      std::string name;
      std::uint32_t node = kNone;
    };
    auto lookup = [&](std::string_view path) -> Where {
      auto parts = split(path);
      if (parts.empty()) return {kNone, "", 0};
      std::uint32_t cur = 0;
      for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
        auto d = live.find(cur);
        if (d == live.end()) return {};
        auto it = d->second.find(parts[i]);
        if (it == d->second.end() || nodes[it->second].type != NodeType::dir) return {};
        cur = it->second;
      }
      Where w{cur, parts.back(), kNone};
      auto d = live.find(cur);
      if (d != live.end()) {
        auto it = d->second.find(parts.back());
        if (it != d->second.end()) w.node = it->second;
      }
      return w;
    };
    auto target = [&](const Op& op) -> std::uint32_t {
      std::uint32_t n = kNone;
      if (!(op.flags & op_flag_by_handle) && !op.path.empty()) n = lookup(op.path).node;
      if (n == kNone && op.ino != 0) {
        auto it = by_ino.find(op.ino);
        if (it != by_ino.end()) n = it->second;
      }
      if (n != kNone && op.ino != 0) by_ino[op.ino] = n;
      return n;
    };
    auto new_node = [&](NodeType type, const Op& op) {
      Node n;
      n.type = type;
      n.mode = op.mode;
      n.first_path = op.path;
      if (type == NodeType::symlink) n.link_target = op.path2;
      std::uint32_t id = add_node(std::move(n));
      if (type == NodeType::dir) live[id];
      if (op.ino != 0) by_ino[op.ino] = id;
      return id;
    };

    res.resize(log->size());
    for (std::uint64_t i = 1; i <= log->size(); ++i) {
      const Op& op = log->at(i);
      Res& r = res[i - 1];
      switch (op.kind) {
        case OpKind::write:
        case OpKind::truncate:
        case OpKind::fallocate:
        case OpKind::chmod:
          r.node = target(op);
          if (r.node == kNone) break;
          r.cls = op.kind == OpKind::chmod ? Cls::meta : Cls::data;
          nodes[r.node].ops.push_back(i);
          break;
        case OpKind::create:
        case OpKind::mkdir:
        case OpKind::symlink: {
          Where w = lookup(op.path);
          if (w.dir == kNone) break;
          NodeType t = op.kind == OpKind::mkdir     ? NodeType::dir
                       : op.kind == OpKind::symlink ? NodeType::symlink
                                                    : (op.mode == 0 ? NodeType::file : type_of(op.mode));
          if (op.kind == OpKind::create && op.mode == 0) t = NodeType::file;
          r.node = new_node(t, op);
          if (nodes[r.node].mode == 0) nodes[r.node].mode = S_IFREG | 0644;
          if (t == NodeType::symlink) nodes[r.node].mode = S_IFLNK | 0777;
          if (t == NodeType::dir && !S_ISDIR(nodes[r.node].mode)) nodes[r.node].mode = S_IFDIR | (op.mode & 07777);
          r.cls = Cls::entry_add;
          r.dir = w.dir;
          r.name = w.name;
          live[w.dir][w.name] = r.node;
          break;
        }
        case OpKind::link: {
          std::uint32_t existing = lookup(op.path).node;
          Where w = lookup(op.path2);
          if (existing == kNone || w.dir == kNone) break;
          r.cls = Cls::entry_add;
          r.node = existing;
          if (op.ino != 0) by_ino[op.ino] = existing;
          r.dir = w.dir;
          r.name = w.name;
          live[w.dir][w.name] = existing;
          break;
        }
        case OpKind::unlink:
        case OpKind::rmdir: {
          Where w = lookup(op.path);
          if (w.node == kNone) break;
          r.cls = Cls::entry_remove;
          r.node = w.node;
          if (op.ino != 0) by_ino[op.ino] = w.node;
          r.dir = w.dir;
          r.name = w.name;
          live[w.dir].erase(w.name);
          break;
        }
        case OpKind::rename: {
          Where a = lookup(op.path);
          Where b = lookup(op.path2);
          if (a.node == kNone || b.dir == kNone) break;
          if (a.dir == b.dir && a.name == b.name) break;  // a rename onto itself changes nothing
          r.node = a.node;
          if (op.ino != 0) by_ino[op.ino] = a.node;
          r.dir = a.dir;
          r.name = a.name;
          r.dir2 = b.dir;
          r.name2 = b.name;
          r.node2 = b.node;
          if ((op.rename_flags & RENAME_EXCHANGE) && b.node != kNone) {
            r.cls = Cls::exchange;
            live[a.dir][a.name] = b.node;
            live[b.dir][b.name] = a.node;
          } else {
            r.cls = Cls::rename;
            live[a.dir].erase(a.name);
            live[b.dir][b.name] = a.node;
          }
          break;
        }
        case OpKind::fsync:
        case OpKind::fdatasync:
        case OpKind::fsync_dir:
          r.node = op.kind == OpKind::fsync_dir ? lookup(op.path).node : target(op);
          if (r.node == kNone) break;
          r.cls = op.kind == OpKind::fdatasync ? Cls::fdatasync : Cls::fsync;
          break;
        case OpKind::sync:
          r.cls = Cls::sync;
          break;
      }
      if (r.cls == Cls::none) unresolved.push_back(i);
    }
  }
};

}  // namespace

// The crash states: which pending operations a crash point keeps, and the
// folder they give.
struct CrashModel::Impl : ResolvedLog {
  CrashPlan plan(const CrashPoint& point) const {
    const std::uint64_t n = log->size();
    if (point.cut < 1 || point.cut > n + 1)
      throw std::invalid_argument("crash model: cut " + std::to_string(point.cut) + " is outside 1.." +
                                  std::to_string(n + 1));
    CrashPlan plan;
    plan.point = point;
    // Backwards from the cut: which barriers come after each op.
    bool global = false;
    std::unordered_set<std::uint32_t> full, data;
    for (std::uint64_t i = point.cut - 1; i >= 1; --i) {
      const Res& r = res[i - 1];
      bool durable = false;
      switch (r.cls) {
        case Cls::sync: global = true; continue;
        case Cls::fsync: full.insert(r.node); continue;
        case Cls::fdatasync: data.insert(r.node); continue;
        case Cls::none: continue;
        case Cls::data: durable = global || full.count(r.node) || data.count(r.node); break;
        case Cls::meta: durable = global || full.count(r.node); break;
        case Cls::entry_add:
        case Cls::entry_remove: durable = global || full.count(r.dir); break;
        case Cls::rename:
        case Cls::exchange: durable = global || (full.count(r.dir) && full.count(r.dir2)); break;
      }
      (durable ? plan.durable : plan.pending).push_back(i);
    }
    std::reverse(plan.durable.begin(), plan.durable.end());
    std::reverse(plan.pending.begin(), plan.pending.end());

    Draw draw(point);
    const auto& p = plan.pending;
    std::vector<bool> keep(p.size(), false);
    switch (point.mode) {
      case CrashMode::lost:
        break;
      case CrashMode::prefix: {
        auto len = draw.below(p.size() + 1);
        for (std::uint64_t j = 0; j < len; ++j) keep[j] = true;
        break;
      }
      case CrashMode::reorder:
        for (std::size_t j = 0; j < p.size(); ++j) keep[j] = draw.coin();
        break;
      case CrashMode::torn: {
        std::vector<std::size_t> writes;
        for (std::size_t j = 0; j < p.size(); ++j) {
          const Op& op = log->at(p[j]);
          if (op.kind == OpKind::write && op.length > 0) writes.push_back(j);
        }
        if (writes.empty()) {  // nothing to tear: an in-order prefix
          auto len = draw.below(p.size() + 1);
          for (std::uint64_t j = 0; j < len; ++j) keep[j] = true;
          break;
        }
        const std::size_t w = writes[draw.below(writes.size())];
        for (std::size_t j = 0; j <= w; ++j) keep[j] = true;
        const Op& op = log->at(p[w]);
        const std::uint64_t first = op.offset / kSectorSize;
        const std::uint64_t last = (op.offset + op.length - 1) / kSectorSize;
        plan.torn_op = op.index;
        plan.torn_sectors = last - first + 1;
        std::vector<bool> landed(plan.torn_sectors);
        std::uint64_t count = 0;
        for (std::uint64_t s = 0; s < plan.torn_sectors; ++s) count += (landed[s] = draw.coin()) ? 1 : 0;
        // A write of two sectors or more is torn: some land, some do not.
        if (plan.torn_sectors >= 2 && (count == 0 || count == plan.torn_sectors)) {
          auto s = draw.below(plan.torn_sectors);
          landed[s] = !landed[s];
        }
        for (std::uint64_t s = 0; s < plan.torn_sectors; ++s)
          if (landed[s]) plan.torn_landed.push_back(s);
        break;
      }
    }
    for (std::size_t j = 0; j < p.size(); ++j) (keep[j] ? plan.kept : plan.dropped).push_back(p[j]);
    return plan;
  }

  // Applies the persisted ops on `node` to the open file `fd`; returns its final mode.
  std::uint32_t apply_ops(const Node& node, int fd, const std::vector<bool>& persisted, const CrashPlan& plan,
                          const std::string& what) const {
    std::uint32_t mode = node.mode;
    std::vector<std::byte> buf;
    for (std::uint64_t i : node.ops) {
      if (!persisted[i]) continue;
      const Op& op = log->at(i);
      switch (op.kind) {
        case OpKind::write: {
          if (i == plan.torn_op) {
            const std::uint64_t first = op.offset / kSectorSize;
            for (std::uint64_t s : plan.torn_landed) {
              const std::uint64_t lo = std::max(op.offset, (first + s) * kSectorSize);
              const std::uint64_t hi = std::min(op.offset + op.length, (first + s + 1) * kSectorSize);
              buf.resize(hi - lo);
              log->read_payload(op, lo - op.offset, buf);
              pwrite_all(fd, buf.data(), buf.size(), lo, what);
            }
            break;
          }
          constexpr std::uint64_t kChunk = 1 << 20;
          for (std::uint64_t from = 0; from < op.length; from += kChunk) {
            buf.resize(std::min(kChunk, op.length - from));
            log->read_payload(op, from, buf);
            pwrite_all(fd, buf.data(), buf.size(), op.offset + from, what);
          }
          break;
        }
        case OpKind::truncate:
          if (::ftruncate(fd, static_cast<off_t>(op.offset)) != 0) throw_errno(what);
          break;
        case OpKind::fallocate:
          if (::fallocate(fd, static_cast<int>(op.mode), static_cast<off_t>(op.offset),
                          static_cast<off_t>(op.length)) != 0) {
            // Emulated where the target's file system lacks the mode:
            // zeroes for punch/zero range, a size change for plain allocation.
            struct stat st {};
            ::fstat(fd, &st);
            const auto size = static_cast<std::uint64_t>(st.st_size);
            const bool keep_size = (op.mode & FALLOC_FL_KEEP_SIZE) != 0;
            if (op.mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
              const std::uint64_t end = keep_size ? std::min(size, op.offset + op.length) : op.offset + op.length;
              if (end > op.offset) {
                buf.assign(end - op.offset, std::byte{0});
                pwrite_all(fd, buf.data(), buf.size(), op.offset, what);
              }
            } else if (!keep_size && op.offset + op.length > size) {
              if (::ftruncate(fd, static_cast<off_t>(op.offset + op.length)) != 0) throw_errno(what);
            }
          }
          break;
        case OpKind::chmod:
          mode = (mode & ~07777u) | (op.mode & 07777u);
          break;
        default:
          break;
      }
    }
    return mode;
  }

  std::uint32_t dir_mode(const Node& node, const std::vector<bool>& persisted) const {
    std::uint32_t mode = node.mode;
    for (std::uint64_t i : node.ops)
      if (persisted[i] && log->at(i).kind == OpKind::chmod) mode = (mode & ~07777u) | (log->at(i).mode & 07777u);
    return mode;
  }

  // The directories once the entry operations before `cut` that `persisted`
  // names are applied to the snapshot's, in log order (null: all of them).
  std::unordered_map<std::uint32_t, Dir> entries_after(std::uint64_t cut, const std::vector<bool>* persisted) const {
    std::unordered_map<std::uint32_t, Dir> dirs = base;
    for (std::uint64_t i = 1; i < cut; ++i) {
      if (persisted != nullptr && !(*persisted)[i]) continue;
      const Res& r = res[i - 1];
      switch (r.cls) {
        case Cls::entry_add:
          dirs[r.dir][r.name] = r.node;
          if (nodes[r.node].type == NodeType::dir) dirs[r.node];
          break;
        case Cls::entry_remove:
          dirs[r.dir].erase(r.name);
          break;
        case Cls::rename:
          dirs[r.dir].erase(r.name);
          dirs[r.dir2][r.name2] = r.node;
          break;
        case Cls::exchange:
          dirs[r.dir][r.name] = r.node2;
          dirs[r.dir2][r.name2] = r.node;
          break;
        default:
          break;
      }
    }
    return dirs;
  }

  // Every node reachable from the root, with its first path ("/a/b").
  std::map<std::uint32_t, std::string> reachable(const std::unordered_map<std::uint32_t, Dir>& dirs) const {
    std::map<std::uint32_t, std::string> out{{0, "/"}};
    std::vector<std::uint32_t> todo{0};
    while (!todo.empty()) {
      std::uint32_t d = todo.back();
      todo.pop_back();
      auto it = dirs.find(d);
      if (it == dirs.end()) continue;
      for (const auto& [name, id] : it->second) {
        if (out.count(id)) continue;
        out[id] = (d == 0 ? "/" : out[d] + "/") + name;
        if (nodes[id].type == NodeType::dir) todo.push_back(id);
      }
    }
    return out;
  }

  nlohmann::json materialize(const CrashPoint& point, const std::filesystem::path& target,
                             const MaterializeOptions& options) const {
    CrashPlan plan = this->plan(point);
    std::vector<bool> persisted(log->size() + 1, false);
    for (auto i : plan.durable) persisted[i] = true;
    for (auto i : plan.kept) persisted[i] = true;

    // The directories after the persisted entry operations, in log order.
    std::unordered_map<std::uint32_t, Dir> dirs = entries_after(point.cut, &persisted);

    std::error_code ec;
    if (std::filesystem::exists(target, ec)) {
      if (options.clear_target) {
        remove_children(target);
      } else if (!std::filesystem::is_empty(target)) {
        throw std::runtime_error("crash model: target " + target.string() + " is not empty");
      }
    } else {
      std::filesystem::create_directories(target);
    }
    int root = ::open(target.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) throw_errno("crash model: target " + target.string());
    Fd root_guard(root);
    int snap = ::open(snapshot.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (snap < 0) throw_errno("crash model: snapshot " + snapshot.string());
    Fd snap_guard(snap);

    std::unordered_map<std::uint32_t, std::string> placed;  // node -> its first path in the target
    std::unordered_set<std::uint32_t> on_path;              // directories being walked (cycle guard)

    auto place = [&](auto&& self, int dirfd, std::uint32_t dir_node, const std::string& rel) -> void {
      on_path.insert(dir_node);
      auto d = dirs.find(dir_node);
      if (d != dirs.end()) {
        for (const auto& [name, id] : d->second) {
          const Node& node = nodes[id];
          const std::string child = rel.empty() ? name : rel + "/" + name;
          const std::string what = "crash model: " + (target / child).string();
          if (node.type != NodeType::dir) {
            auto prior = placed.find(id);
            if (prior != placed.end()) {  // another name of a file already placed
              if (::linkat(root, prior->second.c_str(), dirfd, name.c_str(), 0) != 0) throw_errno(what);
              continue;
            }
          }
          switch (node.type) {
            case NodeType::dir: {
              if (on_path.count(id) || placed.count(id)) continue;  // a reordered rename made a loop
              if (::mkdirat(dirfd, name.c_str(), 0700) != 0) throw_errno(what);
              placed[id] = child;
              int sub = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
              if (sub < 0) throw_errno(what);
              Fd guard(sub);
              self(self, sub, id, child);
              if (::fchmod(sub, dir_mode(node, persisted) & 07777) != 0) throw_errno(what);
              break;
            }
            case NodeType::symlink:
              if (::symlinkat(node.link_target.c_str(), dirfd, name.c_str()) != 0) throw_errno(what);
              placed[id] = child;
              break;
            case NodeType::other:
              if (::mknodat(dirfd, name.c_str(), node.mode, static_cast<dev_t>(node.rdev)) != 0) throw_errno(what);
              placed[id] = child;
              break;
            case NodeType::file: {
              placed[id] = child;
              bool touched = false;
              for (auto i : node.ops) touched = touched || persisted[i];
              if (node.from_snapshot && !touched && options.untouched == UntouchedFiles::hardlink &&
                  ::linkat(snap, node.snapshot_rel.c_str(), dirfd, name.c_str(), 0) == 0)
                break;
              int fd = ::openat(dirfd, name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
              if (fd < 0) throw_errno(what);
              Fd guard(fd);
              if (node.from_snapshot) {
                int src = ::openat(snap, node.snapshot_rel.c_str(), O_RDONLY | O_CLOEXEC);
                if (src < 0) throw_errno("crash model: snapshot " + (snapshot / node.snapshot_rel).string());
                Fd src_guard(src);
                clone_into(src, fd, options.untouched != UntouchedFiles::copy, what);
              }
              std::uint32_t mode = apply_ops(node, fd, persisted, plan, what);
              if (::fchmod(fd, mode & 07777) != 0) throw_errno(what);
              break;
            }
          }
        }
      }
      on_path.erase(dir_node);
    };
    place(place, root, 0, "");
    if (::fchmod(root, dir_mode(nodes[0], persisted) & 07777) != 0) throw_errno("crash model: " + target.string());

    nlohmann::json out = describe(plan);
    // Files the device had when the power went, with data a barrier made
    // durable, whose name was not durable: gone.
    nlohmann::json lost = nlohmann::json::array();
    for (const auto& [id, path] : reachable(entries_after(point.cut, nullptr))) {
      if (placed.count(id) || nodes[id].type == NodeType::dir) continue;
      bool durable_data = false;
      for (auto i : nodes[id].ops) durable_data = durable_data || (i < point.cut && persisted[i]);
      if (durable_data) lost.push_back(path);
    }
    out["lost_files"] = std::move(lost);
    return out;
  }

  nlohmann::json describe(const CrashPlan& plan) const {
    nlohmann::json out{{"cut", plan.point.cut},
                       {"mode", to_string(plan.point.mode)},
                       {"seed", plan.point.seed},
                       {"ops", log->size()},
                       {"durable", ranges(plan.durable)}};
    std::unordered_set<std::uint64_t> kept(plan.kept.begin(), plan.kept.end());
    nlohmann::json pending = nlohmann::json::array();
    for (auto i : plan.pending) {
      nlohmann::json j = to_json(log->at(i));
      j["kept"] = kept.count(i) > 0;
      if (i == plan.torn_op) j["torn"] = true;
      pending.push_back(std::move(j));
    }
    out["pending"] = std::move(pending);
    if (plan.torn_op != 0) {
      const Op& op = log->at(plan.torn_op);
      out["torn"] = {{"op", op.index},           {"path", op.path},          {"offset", op.offset},
                     {"length", op.length},      {"sector_size", kSectorSize}, {"first_sector", op.offset / kSectorSize},
                     {"sectors", plan.torn_sectors}, {"landed", plan.torn_landed}};
    } else {
      out["torn"] = nullptr;
    }
    if (!unresolved.empty()) out["unresolved"] = unresolved;
    return out;
  }
};

CrashModel::CrashModel(std::filesystem::path snapshot, const OpLog& log) : impl_(std::make_unique<Impl>()) {
  impl_->snapshot = std::move(snapshot);
  impl_->log = &log;
  if (log.ops().size() != log.size())
    throw std::invalid_argument("crash model: the log holds no entries in memory (a streaming writer's log)");
  int fd = ::open(impl_->snapshot.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("crash model: snapshot " + impl_->snapshot.string());
  Fd guard(fd);
  struct stat st {};
  ::fstat(fd, &st);
  Node root;
  root.type = NodeType::dir;
  root.from_snapshot = true;
  root.mode = static_cast<std::uint32_t>(st.st_mode);
  root.first_path = "/";
  impl_->add_node(std::move(root));
  std::unordered_map<std::uint64_t, std::uint32_t> seen;
  impl_->scan(fd, 0, "", seen);
  impl_->resolve();
}

CrashModel::~CrashModel() = default;

std::uint64_t CrashModel::op_count() const { return impl_->log->size(); }

CrashPlan CrashModel::plan(const CrashPoint& point) const { return impl_->plan(point); }

nlohmann::json CrashModel::materialize(const CrashPoint& point, const std::filesystem::path& target,
                                       const MaterializeOptions& options) const {
  return impl_->materialize(point, target, options);
}

nlohmann::json CrashModel::describe(const CrashPlan& plan) const { return impl_->describe(plan); }

void snapshot_folder(const std::filesystem::path& from, const std::filesystem::path& to) {
  namespace fs = std::filesystem;
  if (fs::exists(to)) throw std::runtime_error("snapshot: " + to.string() + " exists");
  fs::create_directories(to);
  auto copy_dir = [&](auto&& self, const fs::path& src, const fs::path& dst) -> void {
    std::vector<fs::directory_entry> entries(fs::directory_iterator(src), fs::directory_iterator{});
    std::sort(entries.begin(), entries.end());
    for (const auto& e : entries) {
      const auto st = e.symlink_status();
      const fs::path out = dst / e.path().filename();
      if (fs::is_symlink(st)) {
        fs::create_symlink(fs::read_symlink(e.path()), out);
      } else if (fs::is_directory(st)) {
        fs::create_directory(out);
        self(self, e.path(), out);
        fs::permissions(out, st.permissions());
      } else if (fs::is_regular_file(st)) {
        int src_fd = ::open(e.path().c_str(), O_RDONLY | O_CLOEXEC);
        if (src_fd < 0) throw_errno("snapshot: " + e.path().string());
        Fd sg(src_fd);
        int dst_fd = ::open(out.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (dst_fd < 0) throw_errno("snapshot: " + out.string());
        Fd dg(dst_fd);
        clone_into(src_fd, dst_fd, true, "snapshot: " + out.string());
        fs::permissions(out, st.permissions());
      } else {
        struct stat s {};
        if (::lstat(e.path().c_str(), &s) != 0 || ::mknod(out.c_str(), s.st_mode, s.st_rdev) != 0)
          throw_errno("snapshot: " + out.string());
      }
    }
  };
  copy_dir(copy_dir, from, to);
  fs::permissions(to, fs::status(from).permissions());
}

}  // namespace otarig::drivers::storage
