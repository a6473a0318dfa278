// dns/channel.h — one c-ares channel driven by one loop's ring.
//
// c-ares 1.18.1 owns the DNS sockets; it tells us through ARES_OPT_SOCK_STATE_CB which of
// them it wants read/write readiness for. Each socket gets a SocketWatch with two one-shot
// IORING_OP_POLL_ADD operations (read, write), re-armed after every readiness while c-ares
// still asks: one-shot polls are level-triggered in effect (a poll armed on a socket that
// still has unread data fires at once), which c-ares's one-read-per-call TCP path needs.
// Readiness calls ares_process_fd(); c-ares's deadlines (ares_timeout) are one loop Timer
// that calls ares_process_fd(ARES_SOCKET_BAD, ARES_SOCKET_BAD). No event thread, no
// ares_process_fds (newer than 1.18).
//
// Closing: c-ares closes its fds itself, right after telling us (0, 0). The watch is
// then retired: its armed polls are cancelled by user_data (not by fd: the fd number may
// already name a new socket), its completions are ignored, and it is freed only once both
// operations are idle. A poll prepared on an fd that c-ares closed and reopened before our
// submit watches the new socket, but it belongs to a retired watch, so whatever it
// reports is ignored and it is cancelled.
//
// Thread: the owning loop's only (Create on it, too). The Channel must outlive every
// operation it submitted: call Shutdown() and wait for idle(), or destroy it after the
// loop stopped (Run returned). Query callbacks run inside ares calls made by Query(),
// readiness handlers, the timer, or Shutdown() (with ARES_EDESTRUCTION); they must not call
// back into the Channel.
#pragma once

#include <ares.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/loop.h"
#include "core/ring.h"
#include "core/timers.h"
#include "dns/answer.h"

namespace ringmail::dns {

inline constexpr size_t kServersMax = 16;
inline constexpr uint32_t kTimeoutMsMax = 60'000;
inline constexpr uint32_t kTriesMax = 10;
inline constexpr uint32_t kReceiveBufferBytesMax = 64u << 20;

struct ChannelOptions {
  // "ip", "ip:port", "[ipv6]:port" or bare "ipv6"; empty: the system's /etc/resolv.conf.
  // When servers are given, /etc/resolv.conf is not read at all.
  std::vector<std::string> servers;
  uint32_t timeout_ms = 2000;  // first try; c-ares lengthens the later rounds
  uint32_t tries = 3;          // per server
  bool tcp = false;            // every query over TCP (ARES_FLAG_USEVC)
  bool edns = true;            // EDNS0, 1232-byte payload: fewer truncated UDP answers
  // SO_RCVBUF of c-ares's sockets (capped by net.core.rmem_max): hundreds of answers
  // arriving in one burst overflow the default ~208 KiB, and a dropped answer costs a timeout.
  uint32_t receive_buffer_bytes = 1 << 20;
};

struct ChannelStats {
  uint64_t queries = 0;
  uint64_t sockets_opened = 0;
  uint64_t sockets_closed = 0;
  uint64_t polls_armed = 0;
  uint64_t readiness = 0;     // poll completions handed to c-ares
  uint64_t poll_errors = 0;   // poll completions with an unexpected error
  uint64_t timer_fired = 0;
};

// Parses one server entry of ChannelOptions::servers.
absl::StatusOr<ares_addr_port_node> ParseServer(const std::string& entry);

class Channel {
 public:
  static absl::StatusOr<std::unique_ptr<Channel>> Create(core::Loop& loop,
                                                         const ChannelOptions& options);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Sends one query (class IN) for `name`; `callback(arg, ...)` runs exactly once, maybe
  // before Query returns. After Shutdown() it runs at once with ARES_EDESTRUCTION.
  void Query(const std::string& name, RecordType type, ares_callback callback, void* arg);
  // Destroys the c-ares channel: pending queries complete with ARES_EDESTRUCTION, sockets
  // close, their polls are cancelled. Idempotent.
  void Shutdown();
  bool shut_down() const { return channel_ == nullptr; }
  // No ring operation of this channel is in flight (safe to destroy).
  bool idle() const;
  size_t sockets() const { return live_.size(); }
  const ChannelStats& stats() const { return stats_; }

 private:
  struct SocketWatch {
    Channel* channel = nullptr;
    int fd = -1;
    bool want_read = false;
    bool want_write = false;
    bool retired = false;
    core::Operation read_op;
    core::Operation write_op;

    void ReadDone(core::Operation&, core::IoResult r) { channel->PollDone(*this, false, r); }
    void WriteDone(core::Operation&, core::IoResult r) { channel->PollDone(*this, true, r); }
  };

  explicit Channel(core::Loop& loop);
  static void SockStateThunk(void* data, ares_socket_t fd, int readable, int writable);
  void SockState(int fd, bool readable, bool writable);
  void Retire(std::unique_ptr<SocketWatch> watch);
  void Arm(SocketWatch& watch, bool write);
  void PollDone(SocketWatch& watch, bool write, core::IoResult result);
  void TimerFired(core::Timer&);
  // After every call into c-ares: re-arm the timer, free retired watches that are idle.
  void Settle();

  core::Loop& loop_;
  ares_channel channel_ = nullptr;
  bool detached_ = false;  // destructor: c-ares's last callbacks must not touch the ring
  int depth_ = 0;          // nesting of calls into c-ares
  core::Timer timer_;
  absl::flat_hash_map<int, std::unique_ptr<SocketWatch>> live_;
  std::vector<std::unique_ptr<SocketWatch>> retired_;
  ChannelStats stats_;
};

}  // namespace ringmail::dns
