#include "tools/ringmaild/privileges.h"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace ringmail::daemon {
namespace {

// getpwnam_r/getgrnam_r scratch: enough for any sane entry; a bigger one is an error.
constexpr size_t kLookupBytesMax = 64 << 10;
// Entries looked at per directory when taking ownership (a spool holds a few hundred).
constexpr size_t kOwnedEntriesMax = 1 << 20;

std::string Errno(int err) { return std::strerror(err); }

std::string UserName(uid_t uid) {
  std::vector<char> buf(kLookupBytesMax);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwuid_r(uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
    return found->pw_name;
  }
  return absl::StrCat("uid ", uid);
}

absl::Status Lchown(const std::string& path, const RunAs& r) {
  if (lchown(path.c_str(), r.uid, r.gid) == 0 || errno == ENOENT) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat("cannot give ", path, " to user ", r.user, ": ", Errno(errno)));
}

bool IsDir(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);  // a symlink is not
}

bool IsRegular(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The names of `dir`'s entries (without . and ..); empty when it cannot be read.
std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    if (out.size() >= kOwnedEntriesMax) break;
    out.push_back(std::move(name));
  }
  closedir(d);
  return out;
}

// Spool layout (spool/): <spool>/<loop index>/<seq>.seg and <spool>/quarantine/<files>.
bool IsSpoolSubdir(const std::string& name) {
  if (name == "quarantine") return true;
  if (name.empty() || name.size() > 9) return false;
  for (char c : name) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<RunAs> ResolveRunAs(const std::string& user, const std::string& group) {
  RunAs r;
  if (user.empty()) {
    if (!group.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("group = \"", group, "\" needs user = \"...\" as well"));
    }
    return r;
  }
  std::vector<char> buf(kLookupBytesMax);
  passwd pw{};
  passwd* found = nullptr;
  int err = getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &found);
  if (err != 0 || found == nullptr) {
    return absl::NotFoundError(absl::StrCat("user = \"", user, "\": no such user",
                                            err != 0 ? absl::StrCat(" (", Errno(err), ")") : ""));
  }
  r.user = user;
  r.uid = found->pw_uid;
  r.gid = found->pw_gid;
  if (!group.empty()) {
    struct group gr{};
    struct group* gfound = nullptr;
    err = getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &gfound);
    if (err != 0 || gfound == nullptr) {
      return absl::NotFoundError(absl::StrCat("group = \"", group, "\": no such group"));
    }
    r.gid = gfound->gr_gid;
  }
  const uid_t euid = geteuid();
  if (euid == r.uid && (group.empty() || getegid() == r.gid)) return r;  // already it
  if (euid != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "user = \"", user, "\": ringmaild runs as ", UserName(euid), ", not root, so it cannot "
        "switch to ", user, "; start it as root or as ", user, ", or remove `user`"));
  }
  r.change = true;
  return r;
}

gid_t DaemonGid(const RunAs& run_as) { return run_as.change ? run_as.gid : getegid(); }

absl::Status CheckSpoolDirPermissions(const std::string& path, gid_t daemon_gid) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return absl::UnavailableError(absl::StrCat("spool directory ", path, ": ", Errno(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("spool directory ", path, " exists and is not a directory"));
  }
  const std::string mode = absl::StrFormat("%04o", st.st_mode & 07777);
  if (st.st_mode & S_IWOTH) {
    return absl::PermissionDeniedError(absl::StrCat(
        "spool directory ", path, " is world-writable (mode ", mode,
        "): anyone could add or remove messages; refusing to start (chmod 0700 ", path, ")"));
  }
  if ((st.st_mode & S_IWGRP) && st.st_gid != daemon_gid) {
    return absl::PermissionDeniedError(absl::StrCat(
        "spool directory ", path, " is writable by group ", st.st_gid, " (mode ", mode,
        "), not the daemon's group ", daemon_gid, "; refusing to start (chmod g-w ", path, ")"));
  }
  return absl::OkStatus();
}

absl::Status GiveOwnership(const RunAs& run_as, const std::string& spool_dir,
                           const std::string& log_dir,
                           const std::vector<std::string>& control_sockets,
                           const std::vector<std::string>& dirs_created) {
  if (!run_as.change) return absl::OkStatus();
  if (absl::Status s = Lchown(spool_dir, run_as); !s.ok()) return s;
  for (const std::string& name : Entries(spool_dir)) {
    const std::string sub = absl::StrCat(spool_dir, "/", name);
    if (!IsSpoolSubdir(name) || !IsDir(sub)) continue;
    if (absl::Status s = Lchown(sub, run_as); !s.ok()) return s;
    for (const std::string& file : Entries(sub)) {
      const std::string f = absl::StrCat(sub, "/", file);
      if (!IsRegular(f)) continue;
      if (absl::Status s = Lchown(f, run_as); !s.ok()) return s;
    }
  }
  if (absl::Status s = Lchown(log_dir, run_as); !s.ok()) return s;
  for (const std::string& name : Entries(log_dir)) {
    const std::string f = absl::StrCat(log_dir, "/", name);
    if (!absl::EndsWith(name, ".log") || !IsRegular(f)) continue;
    if (absl::Status s = Lchown(f, run_as); !s.ok()) return s;
  }
  for (const std::string& dir : dirs_created) {
    if (absl::Status s = Lchown(dir, run_as); !s.ok()) return s;
  }
  for (const std::string& sock : control_sockets) {
    if (absl::Status s = Lchown(sock, run_as); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status DropPrivileges(const RunAs& r) {
  if (!r.change) return absl::OkStatus();
  auto failed = [&](const char* what) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot drop privileges to ", r.user, ": ", what, ": ", Errno(errno)));
  };
  // Groups first: once the uid is not 0 any more, the groups can no longer be changed.
  if (setgroups(1, &r.gid) != 0) return failed("setgroups");
  if (setresgid(r.gid, r.gid, r.gid) != 0) return failed("setresgid");
  if (setresuid(r.uid, r.uid, r.uid) != 0) return failed("setresuid");
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0) {
    return failed("getresuid");
  }
  if (ruid != r.uid || euid != r.uid || suid != r.uid || rgid != r.gid || egid != r.gid ||
      sgid != r.gid) {
    return absl::InternalError(absl::StrCat("privilege drop to ", r.user, " left uids ", ruid,
                                            "/", euid, "/", suid, " gids ", rgid, "/", egid,
                                            "/", sgid));
  }
  gid_t groups[2];
  const int n = getgroups(2, groups);
  if (n != 1 || groups[0] != r.gid) {
    return absl::InternalError(absl::StrCat("privilege drop to ", r.user,
                                            " left supplementary groups (", n, ")"));
  }
  // The proof: a process that can become root again has not dropped anything.
  if (r.uid != 0 && (setuid(0) == 0 || seteuid(0) == 0)) {
    return absl::InternalError(absl::StrCat("after dropping to ", r.user,
                                            " the daemon could become root again"));
  }
  return absl::OkStatus();
}

}  // namespace ringmail::daemon
