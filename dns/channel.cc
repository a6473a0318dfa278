#include "dns/channel.h"

#include <poll.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/check.h"

namespace ringmail::dns {
namespace {

constexpr int kEdnsPayloadBytes = 1232;  // the DNS flag day 2020 size: no IP fragmentation
constexpr size_t kServerEntryMax = 64;
constexpr int kDnsPort = 53;
constexpr int kClassIn = 1;

absl::Status LibraryInit() {
  // Once per process and never cleaned up: c-ares 1.18's init is not thread-safe, a
  // function-local static is.
  static const int rc = ares_library_init(ARES_LIB_INIT_ALL);
  if (rc != ARES_SUCCESS) {
    return absl::InternalError(absl::StrCat("c-ares library init: ", ares_strerror(rc)));
  }
  return absl::OkStatus();
}

absl::Status BadServer(const std::string& entry, const char* why) {
  return absl::InvalidArgumentError(
      absl::StrCat("resolver \"", entry.substr(0, kServerEntryMax), "\": ", why));
}

}  // namespace

absl::StatusOr<ares_addr_port_node> ParseServer(const std::string& entry) {
  if (entry.empty() || entry.size() > kServerEntryMax) {
    return BadServer(entry, "expected ip, ip:port or [ipv6]:port");
  }
  std::string_view s = entry;
  std::string_view host = s;
  std::string_view port_text;
  if (s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos) return BadServer(entry, "missing ']'");
    host = s.substr(1, close - 1);
    std::string_view rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return BadServer(entry, "expected ':' after ']'");
      port_text = rest.substr(1);
      if (port_text.empty()) return BadServer(entry, "empty port");
    }
  } else if (std::count(s.begin(), s.end(), ':') == 1) {
    size_t colon = s.find(':');
    host = s.substr(0, colon);
    port_text = s.substr(colon + 1);
    if (port_text.empty()) return BadServer(entry, "empty port");
  }
  int port = kDnsPort;
  if (!port_text.empty()) {
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port < 1 ||
        port > 65535) {
      return BadServer(entry, "port must be a number from 1 to 65535");
    }
  }
  std::optional<IpAddress> ip = IpAddress::Parse(host);
  if (!ip.has_value()) return BadServer(entry, "not an IP address");
  if (s.front() == '[' && ip->family != AF_INET6) return BadServer(entry, "[...] needs IPv6");
  ares_addr_port_node node{};
  node.next = nullptr;
  node.family = ip->family;
  if (ip->family == AF_INET) {
    std::memcpy(&node.addr.addr4, ip->bytes.data(), 4);
  } else {
    std::memcpy(&node.addr.addr6, ip->bytes.data(), 16);
  }
  node.udp_port = port;
  node.tcp_port = port;
  return node;
}

Channel::Channel(core::Loop& loop) : loop_(loop) { timer_.Bind<&Channel::TimerFired>(this); }

absl::StatusOr<std::unique_ptr<Channel>> Channel::Create(core::Loop& loop,
                                                         const ChannelOptions& options) {
  RM_DCHECK(loop.IsCurrent());
  if (absl::Status s = LibraryInit(); !s.ok()) return s;
  if (options.servers.size() > kServersMax) {
    return absl::InvalidArgumentError(absl::StrCat("more than ", kServersMax, " resolvers"));
  }
  if (options.timeout_ms < 1 || options.timeout_ms > kTimeoutMsMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("DNS timeout must be 1..", kTimeoutMsMax, " ms"));
  }
  if (options.receive_buffer_bytes > kReceiveBufferBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("DNS receive buffer must be at most ", kReceiveBufferBytesMax, " bytes"));
  }
  if (options.tries < 1 || options.tries > kTriesMax) {
    return absl::InvalidArgumentError(absl::StrCat("DNS tries must be 1..", kTriesMax));
  }
  std::vector<ares_addr_port_node> servers;
  for (const std::string& entry : options.servers) {
    absl::StatusOr<ares_addr_port_node> node = ParseServer(entry);
    if (!node.ok()) return node.status();
    servers.push_back(*node);
  }
  for (size_t i = 0; i + 1 < servers.size(); ++i) servers[i].next = &servers[i + 1];

  std::unique_ptr<Channel> channel(new Channel(loop));
  ares_options o{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
             ARES_OPT_NOROTATE;
  o.sock_state_cb = &Channel::SockStateThunk;
  o.sock_state_cb_data = channel.get();
  o.timeout = static_cast<int>(options.timeout_ms);
  o.tries = static_cast<int>(options.tries);
  // ares_query never searches, but say so; NOALIASES ignores HOSTALIASES from the
  // environment.
  o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  if (options.tcp) o.flags |= ARES_FLAG_USEVC;
  if (options.receive_buffer_bytes > 0) {
    o.socket_receive_buffer_size = static_cast<int>(options.receive_buffer_bytes);
    mask |= ARES_OPT_SOCK_RCVBUF;
  }
  if (options.edns) {
    o.flags |= ARES_FLAG_EDNS;
    o.ednspsz = kEdnsPayloadBytes;
    mask |= ARES_OPT_EDNSPSZ;
  }
  // Configured servers replace the system's completely: not even its options are read.
  char dev_null[] = "/dev/null";
  if (!servers.empty()) {
    o.resolvconf_path = dev_null;
    mask |= ARES_OPT_RESOLVCONF;
  }
  int rc = ares_init_options(&channel->channel_, &o, mask);
  if (rc != ARES_SUCCESS) {
    channel->channel_ = nullptr;
    return absl::UnavailableError(absl::StrCat("c-ares channel: ", ares_strerror(rc)));
  }
  if (!servers.empty()) {
    rc = ares_set_servers_ports(channel->channel_, servers.data());
    if (rc != ARES_SUCCESS) {
      return absl::InvalidArgumentError(absl::StrCat("DNS servers: ", ares_strerror(rc)));
    }
  }
  return channel;
}

Channel::~Channel() {
  RM_CHECK(idle()) << "dns channel destroyed with a poll in flight";
  if (channel_ != nullptr) {
    // The loop is gone or never polled anything: c-ares closes its sockets itself and
    // there is nothing in the ring to cancel.
    detached_ = true;
    ares_channel c = channel_;
    channel_ = nullptr;
    ares_destroy(c);
  }
  if (timer_.armed()) loop_.timers().Cancel(timer_);
}

bool Channel::idle() const {
  for (const auto& [fd, w] : live_) {
    if (!w->read_op.idle() || !w->write_op.idle()) return false;
  }
  for (const auto& w : retired_) {
    if (!w->read_op.idle() || !w->write_op.idle()) return false;
  }
  return true;
}

void Channel::Query(const std::string& name, RecordType type, ares_callback callback,
                    void* arg) {
  if (channel_ == nullptr) {
    callback(arg, ARES_EDESTRUCTION, 0, nullptr, 0);
    return;
  }
  ++stats_.queries;
  ++depth_;
  ares_query(channel_, name.c_str(), kClassIn, static_cast<int>(type), callback, arg);
  --depth_;
  Settle();
}

void Channel::Shutdown() {
  if (channel_ == nullptr) return;
  ares_channel c = channel_;
  channel_ = nullptr;  // a callback that queries now gets ARES_EDESTRUCTION at once
  ++depth_;
  ares_destroy(c);  // callbacks with ARES_EDESTRUCTION; (0, 0) for each open socket
  --depth_;
  // Anything c-ares did not report closed is closed now all the same.
  std::vector<std::unique_ptr<SocketWatch>> left;
  for (auto& [fd, w] : live_) left.push_back(std::move(w));
  live_.clear();
  for (auto& w : left) Retire(std::move(w));
  Settle();
}

void Channel::SockStateThunk(void* data, ares_socket_t fd, int readable, int writable) {
  static_cast<Channel*>(data)->SockState(fd, readable != 0, writable != 0);
}

void Channel::SockState(int fd, bool readable, bool writable) {
  if (detached_) return;
  auto it = live_.find(fd);
  if (!readable && !writable) {
    if (it == live_.end()) return;
    std::unique_ptr<SocketWatch> watch = std::move(it->second);
    live_.erase(it);
    Retire(std::move(watch));
    return;
  }
  SocketWatch* watch;
  if (it == live_.end()) {
    auto fresh = std::make_unique<SocketWatch>();
    fresh->channel = this;
    fresh->fd = fd;
    fresh->read_op.Bind<&SocketWatch::ReadDone>(fresh.get(), "dns.poll_read");
    fresh->write_op.Bind<&SocketWatch::WriteDone>(fresh.get(), "dns.poll_write");
    watch = fresh.get();
    live_.emplace(fd, std::move(fresh));
    ++stats_.sockets_opened;
  } else {
    watch = it->second.get();
  }
  watch->want_read = readable;
  watch->want_write = writable;
  // A poll that is no longer wanted stays armed; its readiness is ignored when it comes.
  if (loop_.stopping()) return;  // the loop cancels what is in flight; arm nothing new
  if (readable && watch->read_op.idle()) Arm(*watch, false);
  if (writable && watch->write_op.idle()) Arm(*watch, true);
}

void Channel::Retire(std::unique_ptr<SocketWatch> watch) {
  watch->retired = true;
  ++stats_.sockets_closed;
  // By user_data (Ring::Cancel): the fd number may already belong to another socket.
  for (core::Operation* op : {&watch->read_op, &watch->write_op}) loop_.ring().Cancel(*op);
  retired_.push_back(std::move(watch));
}

void Channel::Arm(SocketWatch& watch, bool write) {
  io_uring_sqe* sqe = loop_.Prepare(write ? watch.write_op : watch.read_op);
  io_uring_prep_poll_add(sqe, watch.fd, write ? POLLOUT : POLLIN);
  ++stats_.polls_armed;
}

void Channel::PollDone(SocketWatch& watch, bool write, core::IoResult result) {
  if (watch.retired) {
    Settle();  // may free `watch`: touch nothing after this
    return;
  }
  if (!result.ok()) {
    // Cancelled by the loop's stop, or a poll error: do not re-arm (a persistent error
    // would spin). c-ares times the socket's queries out, ends them as temporary
    // failures, and closes the socket when no query is left; the next query gets a new
    // socket and a new watch.
    if (!result.canceled()) ++stats_.poll_errors;
    Settle();
    return;
  }
  ++stats_.readiness;
  bool wanted = write ? watch.want_write : watch.want_read;
  if (wanted && channel_ != nullptr) {
    int fd = watch.fd;
    ++depth_;
    ares_process_fd(channel_, write ? ARES_SOCKET_BAD : fd, write ? fd : ARES_SOCKET_BAD);
    --depth_;
  }
  // `watch` is still allocated: retired watches are freed by Settle() only.
  if (!watch.retired && !loop_.stopping()) {
    if (watch.want_read && watch.read_op.idle()) Arm(watch, false);
    if (watch.want_write && watch.write_op.idle()) Arm(watch, true);
  }
  Settle();
}

void Channel::TimerFired(core::Timer&) {
  ++stats_.timer_fired;
  if (channel_ != nullptr) {
    ++depth_;
    ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    --depth_;
  }
  Settle();
}

void Channel::Settle() {
  // Nested inside an ares call (a query callback that queries again): the outer frame
  // settles, and may still hold a watch that this would free.
  if (depth_ > 0) return;
  timeval tv{};
  timeval* next = channel_ != nullptr ? ares_timeout(channel_, nullptr, &tv) : nullptr;
  if (next == nullptr) {
    if (timer_.armed()) loop_.timers().Cancel(timer_);
  } else {
    // ares_timeout() measured from the current time, so the deadline is too (the loop's
    // cached now_ms() may be a whole turn old). Rounded up: never fire before c-ares is due.
    uint64_t ms = static_cast<uint64_t>(next->tv_sec) * 1000 +
                  (static_cast<uint64_t>(next->tv_usec) + 999) / 1000;
    loop_.timers().Arm(timer_, core::MonotonicMs() + ms);
  }
  retired_.erase(std::remove_if(retired_.begin(), retired_.end(),
                                [](const std::unique_ptr<SocketWatch>& w) {
                                  return w->read_op.idle() && w->write_op.idle();
                                }),
                 retired_.end());
}

}  // namespace ringmail::dns
