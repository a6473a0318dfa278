// tools/ringmaild/privileges.h — least privilege for ringmaild: who to run as, the start-up
// checks of the spool directory's permissions, taking ownership of what the daemon created,
// and the irreversible drop from root to the configured `user` / `group`.
//
// The order (Daemon::Run): ResolveRunAs() and CheckSpoolDirPermissions() before anything is
// created, so a wrong user or an unsafe spool fails in one line at once; then the daemon
// binds its listeners and control socket as root, GiveOwnership() hands the spool, log and
// control-socket paths to the user, and DropPrivileges() changes every thread of the
// process (glibc applies set*id to all threads) and proves it cannot get root back.
// io_uring requests submitted after the drop carry the new credentials: the kernel records
// the submitter's credentials with each request it hands to its workers.
//
// Main or master-loop thread, start-up only. Nothing here is on the mail path.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ringmail::daemon {

struct RunAs {
  bool change = false;  // false: keep the current credentials (no `user`, or already it)
  std::string user;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Resolves `user` (and `group`, which defaults to the user's primary group) through the
// password and group databases. Errors: an unknown user or group; a `user` other than the
// current one when not started as root (it could never be reached).
absl::StatusOr<RunAs> ResolveRunAs(const std::string& user, const std::string& group);

// The group the daemon's files belong to once it runs: run_as.gid when it changes,
// else the current effective group.
gid_t DaemonGid(const RunAs& run_as);

// Refuses a spool directory that others could write into: world-writable, or writable by a
// group other than `daemon_gid`. A directory that does not exist yet passes (it will be
// created 0700). One-line errors that name the path, its mode and the fix.
absl::Status CheckSpoolDirPermissions(const std::string& path, gid_t daemon_gid);

// Makes `run_as` the owner of the spool tree (the directory, its loop and quarantine
// directories and their files), the log directory and its *.log files, and the given
// control sockets — only the names ringmaild creates, never an arbitrary tree, and never
// following a symbolic link. `dirs_created` are further directories (the control socket's)
// the daemon made itself. A no-op when !run_as.change.
absl::Status GiveOwnership(const RunAs& run_as, const std::string& spool_dir,
                           const std::string& log_dir,
                           const std::vector<std::string>& control_sockets,
                           const std::vector<std::string>& dirs_created);

// setgroups({gid}), setgid, setuid; then verifies the real, effective and saved ids are the
// new ones and that setuid(0) fails. A no-op when !run_as.change.
absl::Status DropPrivileges(const RunAs& run_as);

}  // namespace ringmail::daemon
