#include "listeners/control/control_listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace ringmail::control {

class ControlListener::Connection {
 public:
  Connection(ControlListener& owner, int fd, uint64_t id) : owner_(owner), fd_(fd), id_(id) {
    recv_op_.Bind<&Connection::RecvDone>(this, "control.recv");
    send_op_.Bind<&Connection::SendDone>(this, "control.send");
    close_op_.Bind<&Connection::CloseDone>(this, "control.close");
    idle_.Bind<&Connection::IdleFired>(this);
  }
  ~Connection() { RM_CHECK(recv_op_.idle() && send_op_.idle() && close_op_.idle()); }

  void Start() { ArmRecv(); }
  // The loop is stopping. A client still waiting for a reply is told it will get none (best
  // effort: a short frame on a socket that took the request, sent without waiting).
  void Abort() {
    if (reply_pending_ && !closing_) {
      const std::string frame = EncodeResponse(
          Response{false, "ringmaild is stopping: the request was not completed\n"});
      (void)!send(fd_, frame.data(), frame.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    }
    BeginClose();
  }
  // The handler's answer to the request in progress.
  void ReplyArrived(Response response) {
    reply_pending_ = false;
    if (closing_) return;
    Send(std::move(response));
  }

 private:
  core::Loop& loop() { return owner_.loop_; }

  void ArmRecv() {
    // The idle timer runs from the connect or the last reply; the bytes of a partial request
    // do not move it, else a byte a minute would hold one of the few control slots for as
    // long as the line limit allows (session 11's audit, F9).
    if (line_.empty() || !idle_.armed()) {
      loop().timers().Arm(idle_, loop().now_ms() + owner_.options_.idle_timeout_ms);
    }
    io_uring_prep_recv(loop().Prepare(recv_op_), fd_, buf_, sizeof(buf_), 0);
  }

  void RecvDone(core::Operation&, core::IoResult r) {
    if (closing_ || !r.ok() || r.value() == 0) {
      BeginClose();
      return;
    }
    line_.append(buf_, r.value());
    ProcessLine();
  }

  // Runs the first complete line, or reads more, or refuses an over-long line.
  void ProcessLine() {
    size_t nl = line_.find('\n');
    if (nl == std::string::npos) {
      if (line_.size() > kRequestLineMax) {
        close_after_send_ = true;
        Send(Response{false, absl::StrCat("request longer than ", kRequestLineMax,
                                          " bytes\n")});
        return;
      }
      ArmRecv();
      return;
    }
    std::string text = line_.substr(0, nl);
    line_.erase(0, nl + 1);
    loop().timers().Cancel(idle_);
    absl::StatusOr<Request> request = ParseRequestLine(text);
    if (!request.ok()) {
      Send(Response{false, absl::StrCat(std::string(request.status().message()), "\n")});
      return;
    }
    reply_pending_ = true;
    // The reply may come after the connection (or the listener) has gone: it holds an id
    // and a weak reference, never this.
    std::weak_ptr<ControlListener*> listener = owner_.self_;
    owner_.handler_(*request, [listener, id = id_](Response response) {
      if (std::shared_ptr<ControlListener*> l = listener.lock()) {
        (*l)->Deliver(id, std::move(response));
      }
    });
  }

  void Send(Response response) {
    out_ = EncodeResponse(response);
    sent_ = 0;
    StartSend();
  }
  void StartSend() {
    io_uring_prep_send(loop().Prepare(send_op_), fd_, out_.data() + sent_, out_.size() - sent_,
                       MSG_NOSIGNAL);
    loop().timers().Arm(idle_, loop().now_ms() + owner_.options_.idle_timeout_ms);
  }
  void SendDone(core::Operation&, core::IoResult r) {
    if (closing_ || !r.ok()) {
      BeginClose();
      return;
    }
    sent_ += r.value();
    if (sent_ < out_.size()) {
      StartSend();
      return;
    }
    if (close_after_send_) {
      BeginClose();
      return;
    }
    ProcessLine();  // a pipelined request may already be buffered
  }

  void IdleFired(core::Timer&) { BeginClose(); }

  void BeginClose() {
    if (closing_) {
      MaybeFinishClose();
      return;
    }
    closing_ = true;
    loop().timers().Cancel(idle_);
    loop().ring().Cancel(recv_op_);
    loop().ring().Cancel(send_op_);
    MaybeFinishClose();
  }
  void MaybeFinishClose() {
    if (close_submitted_ || !recv_op_.idle() || !send_op_.idle()) return;
    close_submitted_ = true;
    io_uring_prep_close(loop().Prepare(close_op_), fd_);
  }
  void CloseDone(core::Operation&, core::IoResult) { owner_.Closed(id_); }

  ControlListener& owner_;
  int fd_;
  const uint64_t id_;
  core::Operation recv_op_;
  core::Operation send_op_;
  core::Operation close_op_;
  core::Timer idle_;
  char buf_[4096];
  std::string line_;
  std::string out_;
  size_t sent_ = 0;
  bool reply_pending_ = false;
  bool closing_ = false;
  bool close_after_send_ = false;
  bool close_submitted_ = false;
};

ControlListener::ControlListener(core::Loop& loop, Options options, Handler handler)
    : loop_(loop), options_(std::move(options)), handler_(std::move(handler)) {
  loop_.OnStop([this] {
    for (auto& a : acceptors_) a->Close();
    std::vector<Connection*> all;
    for (auto& [id, c] : connections_) all.push_back(c.get());
    for (Connection* c : all) c->Abort();
  });
}

ControlListener::~ControlListener() {
  RM_CHECK(connections_.empty()) << "control listener destroyed with live connections";
  // Each Acceptor checks that its accept is no longer in flight and closes its socket.
  for (const std::string& path : bound_paths_) unlink(path.c_str());
}

namespace {

// Binds a listening Unix socket at `path` that only this user can ever reach: it is bound
// inside a fresh private directory (mkdtemp: mode 0700), made 0600, and only then renamed
// into place. No umask games: umask is process-wide, and other threads may be creating
// files meanwhile. Returns the listening fd.
absl::StatusOr<int> BindPrivateSocket(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  std::string private_dir = (slash == 0 ? std::string() : dir) + "/.ringmail-XXXXXX";
  const std::string suffix = "/s";
  sockaddr_un addr{};
  if (private_dir.size() + suffix.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("control socket directory path too long: ", dir));
  }
  if (mkdtemp(private_dir.data()) == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot create a private directory in ", dir,
                                               " for the control socket: ", strerror(errno)));
  }
  const std::string tmp = private_dir + suffix;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int err = errno;
    rmdir(private_dir.c_str());
    return absl::UnavailableError(absl::StrCat("socket: ", strerror(err)));
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, tmp.data(), tmp.size());
  const char* step = "bind";
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  if (ok) ok = (step = "chmod", chmod(tmp.c_str(), 0600) == 0);
  if (ok) ok = (step = "listen", listen(fd, 64) == 0);
  if (ok) ok = (step = "rename", rename(tmp.c_str(), path.c_str()) == 0);
  const int err = errno;
  if (!ok) {
    close(fd);
    unlink(tmp.c_str());
  }
  rmdir(private_dir.c_str());
  if (!ok) {
    return absl::UnavailableError(absl::StrCat("cannot listen on control socket ", path, ": ",
                                               step, ": ", strerror(err)));
  }
  return fd;
}

}  // namespace

absl::Status ControlListener::Listen() {
  for (const std::string& path : options_.socket_paths) {
    sockaddr_un addr{};
    if (path.size() >= sizeof(addr.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat("control socket path too long: ", path));
    }
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("control socket path ", path, " exists and is not a socket"));
    }
    // A stale socket from an earlier run is replaced by the rename, atomically.
    absl::StatusOr<int> fd = BindPrivateSocket(path);
    if (!fd.ok()) return fd.status();
    auto a = std::make_unique<core::Acceptor>(loop_, "control.accept");
    a->Bind<&ControlListener::AcceptDone>(this);
    bound_paths_.push_back(path);
    a->Start(*fd);
    acceptors_.push_back(std::move(a));
  }
  return absl::OkStatus();
}

void ControlListener::AcceptDone(core::Accepted a) {
  if (a.fd < 0) return;  // accept errors are not counted here
  const int fd = a.fd;
  if (static_cast<int64_t>(connections_.size()) >= options_.max_connections) {
    // Best effort and tiny: fits any socket buffer, so this write cannot block.
    static const std::string kBusy = EncodeResponse({false, "too many control clients"});
    (void)!write(fd, kBusy.data(), kBusy.size());
    close(fd);
    return;
  }
  const uint64_t id = next_id_++;
  auto c = std::make_unique<Connection>(*this, fd, id);
  Connection* raw = c.get();
  connections_.emplace(id, std::move(c));
  raw->Start();
}

void ControlListener::Closed(uint64_t id) { connections_.erase(id); }

void ControlListener::Deliver(uint64_t id, Response response) {
  RM_DCHECK(loop_.IsCurrent()) << "a control reply called off the listener's loop";
  auto it = connections_.find(id);
  if (it == connections_.end()) return;  // the client left, or the loop stopped: dropped
  it->second->ReplyArrived(std::move(response));
}

}  // namespace ringmail::control
