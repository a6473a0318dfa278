#include "tests/campaigns/campaign_util.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace ringmail::campaigns {

using integration::ReadFile;
using integration::RunProgram;
using integration::RunResult;
using integration::Subprocess;

bool FullScale() {
  const char* v = std::getenv("RINGMAIL_CAMPAIGN");
  return v != nullptr && std::string(v) == "full";
}

int64_t Scaled(const char* name, int64_t ci, int64_t full) {
  const char* v = std::getenv(absl::StrCat("RINGMAIL_CAMPAIGN_", name).c_str());
  int64_t n = 0;
  if (v != nullptr && absl::SimpleAtoi(v, &n) && n > 0) return n;
  return FullScale() ? full : ci;
}

uint64_t CampaignSeed(const char* campaign) {
  uint64_t seed = 0;
  const char* v = std::getenv("RINGMAIL_CAMPAIGN_SEED");
  if (v == nullptr || !absl::SimpleAtoi(v, &seed)) {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  std::printf("%s campaign seed %llu (replay: RINGMAIL_CAMPAIGN_SEED=%llu)\n", campaign,
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  return seed;
}

void PrintFigures(const std::string& name, const std::string& fields) {
  std::printf("CAMPAIGN %s %s\n", name.c_str(), fields.c_str());
  std::fflush(stdout);
}

uint64_t RaiseFdLimit(uint64_t want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  rlim_t target = want;
  if (rl.rlim_max != RLIM_INFINITY && target > rl.rlim_max) target = rl.rlim_max;
  if (rl.rlim_cur < target) {
    rl.rlim_cur = target;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

absl::StatusOr<std::vector<RecordLine>> ReadRecord(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  std::vector<RecordLine> out;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    RecordLine r;
    if (f.size() != 3 || !absl::SimpleAtoi(f[0], &r.seq) || f[1].size() < 3 ||
        f[1].front() != '<' || f[1].back() != '>') {
      return absl::DataLossError(absl::StrCat(path, ": malformed record line: ", line));
    }
    r.message_id = std::string(f[1]);
    r.queue_id = std::string(f[2]);
    out.push_back(std::move(r));
  }
  return out;
}

namespace {

// The Message-ID header value in the header block at the start of `text` (after the dump's
// envelope lines and blank line); empty when there is none.
std::string MessageIdOf(const std::string& text) {
  size_t start = text.find("\r\n\r\n");
  if (start == std::string::npos) return "";
  start += 4;
  size_t end = text.find("\r\n\r\n", start);
  if (end == std::string::npos) end = text.size();
  size_t pos = start;
  while (pos < end) {
    size_t eol = text.find("\r\n", pos);
    if (eol == std::string::npos || eol > end) eol = end;
    absl::string_view line(text.data() + pos, eol - pos);
    pos = eol + 2;
    if (absl::ConsumePrefix(&line, "Message-ID:") || absl::ConsumePrefix(&line, "Message-Id:")) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

}  // namespace

std::map<std::string, int> ArrivalsByMessageId(const std::string& dump_dir) {
  std::map<std::string, int> out;
  std::error_code ec;
  std::string buffer(64 * 1024, '\0');
  for (const auto& e : std::filesystem::recursive_directory_iterator(dump_dir, ec)) {
    if (e.path().extension() != ".eml") continue;
    std::ifstream in(e.path(), std::ios::binary);
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    std::string head(buffer.data(), static_cast<size_t>(in.gcount()));
    std::string id = MessageIdOf(head);
    ++out[id.empty() ? "(no Message-ID: " + e.path().filename().string() + ")" : id];
  }
  return out;
}

absl::Status LoadRun::Start(uint16_t port, const std::string& record_path,
                            const std::vector<std::string>& flags,
                            const std::string& stderr_path) {
  std::vector<std::string> argv = {integration::RingloadPath(), "send", "--target",
                                   absl::StrCat("127.0.0.1:", port), "--json", "--quiet",
                                   "--record", record_path};
  argv.insert(argv.end(), flags.begin(), flags.end());
  Subprocess::Options options;
  options.stderr_path = stderr_path;
  absl::StatusOr<Subprocess> p = Subprocess::Start(argv, options);
  if (!p.ok()) return p.status();
  process_ = std::move(*p);
  return absl::OkStatus();
}

SendReport LoadRun::Finish(Millis timeout) {
  SendReport r;
  if (!process_.running()) return r;
  std::string out = process_.ReadAllStdout(timeout);
  std::optional<int> status = process_.Wait(Millis(0));
  if (!status.has_value()) {
    process_.Signal(SIGTERM);
    out += process_.ReadAllStdout(Millis(10'000));
    status = process_.Wait(Millis(5'000));
  }
  if (!status.has_value()) {
    process_.Kill();
    return r;
  }
  r.exit_code = WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  r.json = out;
  size_t codes = out.find("\"codes\":{");
  r.finished = (r.exit_code == 0 || r.exit_code == 1) && codes != std::string::npos;
  auto number = [&out](const char* key) -> uint64_t {
    uint64_t n = 0;
    std::optional<std::string> v = integration::JsonField(out, key);
    if (v.has_value()) (void)absl::SimpleAtoi(*v, &n);
    return n;
  };
  r.ok = number("messages");
  r.p50_us = number("p50");
  r.p99_us = number("p99");
  r.max_us = number("max");
  if (codes != std::string::npos) {
    size_t start = codes + 9;
    size_t end = out.find('}', start);
    for (absl::string_view item :
         absl::StrSplit(absl::string_view(out).substr(start, end - start), ',',
                        absl::SkipEmpty())) {
      std::vector<absl::string_view> kv = absl::StrSplit(item, ':');
      uint64_t n = 0;
      if (kv.size() == 2 && absl::SimpleAtoi(kv[1], &n)) {
        r.codes[std::string(absl::StripPrefix(absl::StripSuffix(kv[0], "\""), "\""))] = n;
      }
    }
  }
  return r;
}

SendReport LoadRun::Stop() {
  if (process_.running()) process_.Signal(SIGTERM);
  return Finish(Millis(15'000));
}

SendReport RunLoad(uint16_t port, const std::string& record_path,
                   const std::vector<std::string>& flags, const std::string& stderr_path,
                   Millis timeout) {
  LoadRun run;
  if (!run.Start(port, record_path, flags, stderr_path).ok()) return SendReport{};
  return run.Finish(timeout);
}

absl::Status RestartableSink::Start(const std::string& dump_dir,
                                    const std::vector<std::string>& extra) {
  const std::string dir = absl::StrCat(dump_dir, "/", starts_++);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  std::vector<std::string> argv = {integration::RingloadPath(), "sink", "--listen",
                                   absl::StrCat("127.0.0.1:", port_), "--dump", dir,
                                   "--quiet"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  Subprocess::Options options;
  options.stderr_path = dir + ".stderr";
  absl::StatusOr<Subprocess> p = Subprocess::Start(argv, options);
  if (!p.ok()) return p.status();
  process_ = std::move(*p);
  std::optional<std::string> line = process_.ReadStdoutLine(Millis(10'000));
  int port = 0;
  if (!line.has_value() || !absl::StartsWith(*line, "listening 127.0.0.1:") ||
      !absl::SimpleAtoi(line->substr(line->rfind(':') + 1), &port) || port <= 0 ||
      (port_ != 0 && port != port_)) {
    process_.Kill();
    return absl::InternalError(absl::StrCat("sink did not start on port ", port_, ": ",
                                            line.value_or("(no line)"), " ",
                                            ReadFile(options.stderr_path).value_or("")));
  }
  port_ = static_cast<uint16_t>(port);
  return absl::OkStatus();
}

absl::Status EnterPrivateMountNamespace() {
  static bool entered = false;
  if (entered) return absl::OkStatus();
  if (unshare(CLONE_NEWNS) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("unshare(CLONE_NEWNS): ", strerror(errno)));
  }
  // Without this a shared / (systemd's default) would propagate our mounts to the host.
  if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("make / private: ", strerror(errno)));
  }
  entered = true;
  return absl::OkStatus();
}

absl::Status MountTmpfs(const std::string& dir, uint64_t bytes) {
  std::string opts = absl::StrCat("size=", bytes, ",mode=0700");
  if (mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat("mount tmpfs: ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status SetImmutable(const std::string& dir, bool immutable) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("open ", dir, ": ", strerror(errno)));
  int flags = 0;
  absl::Status status;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    status = absl::UnimplementedError(absl::StrCat("FS_IOC_GETFLAGS: ", strerror(errno)));
  } else {
    flags = immutable ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) {
      status = absl::UnimplementedError(absl::StrCat("FS_IOC_SETFLAGS: ", strerror(errno)));
    }
  }
  ::close(fd);
  return status;
}

absl::Status Unmount(const std::string& dir) {
  if (umount2(dir.c_str(), MNT_DETACH) != 0) {
    return absl::InternalError(absl::StrCat("umount ", dir, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

SpoolCheck CheckSpool(const std::string& spool_dir) {
  SpoolCheck c;
  RunResult v = RunProgram({integration::SpoolToolPath(), "verify", spool_dir}, Millis(60'000));
  c.verify_ok = v.exit_code == 0 && absl::StrContains(v.out, "\nOK\n");
  c.verify_output = v.out + v.err;
  RunResult l = RunProgram({integration::SpoolToolPath(), "list", spool_dir}, Millis(60'000));
  c.live_ids = integration::ListedIds(l.out);
  if (l.exit_code != 0) c.verify_ok = false;
  return c;
}

std::optional<uint64_t> Counter(const std::string& control_socket, const std::string& key) {
  std::map<std::string, uint64_t> s = integration::Summary(control_socket);
  auto it = s.find(key);
  if (it == s.end()) return std::nullopt;
  return it->second;
}

}  // namespace ringmail::campaigns
