// tools/ringload/send_conn.h — the part of a `ringload send` connection that does not
// depend on what it speaks: socket, connect, the multishot receive into the worker's
// BufferRing, the I/O deadline, close (cancel every operation on the fd, wait until they
// are idle, close through the ring), reconnect with backoff, and the worker's connection
// and error counters. ClientConn (SMTP, sender.h) and HttpConn (http_conn.h) derive from
// it and keep only their protocol: what to do once connected, with received bytes, when
// the peer closes, what is in flight and when an answer is awaited.
//
// Owned by its SendWorker (one per slot) and used on the worker's loop thread only. The
// fd is owned here; the destructor closes it plainly, which is safe only after the loop
// has stopped (every operation completed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/loop.h"

namespace ringmail::ringload {

class SendWorker;

class SendConn {
 public:
  SendConn(const SendConn&) = delete;
  SendConn& operator=(const SendConn&) = delete;
  virtual ~SendConn();

  void Connect();
  virtual void Resume() = 0;  // a parked connection: a message is due, or the run is over
  void Shutdown();            // the run is stopped: abort what is in flight and close
  void Abandon();             // no message is left: close unless in a session
  bool finished() const { return link_ == Link::kFinished; }

 protected:
  // The connection's lifecycle; what happens while kOpen is the protocol's.
  enum class Link : uint8_t { kDisconnected, kConnecting, kOpen, kClosing, kFinished };

  // `connect_name` and `close_name` name the operations in diagnostics. The derived class
  // binds recv_op_ to RecvDone (it is multishot) and send_op_ to its own handler.
  SendConn(SendWorker* worker, const char* connect_name, const char* close_name);

  // ---- the protocol's part ----
  virtual void ResetSession() = 0;  // forget the session's protocol state (no I/O)
  virtual void Opened() = 0;        // connected (link_ is kOpen, the receive armed)
  virtual void Received(std::string_view data) = 0;  // kOpen only
  virtual void PeerClosed() = 0;                     // end of stream while kOpen
  virtual void RecvFailed(int error) = 0;            // receive error while kOpen
  virtual bool AwaitingAnswer() const = 0;  // kOpen: an answer is due (the I/O deadline)
  virtual size_t TakeInFlight() = 0;        // forget the messages in flight; how many
  virtual bool CloseWhenAbandoned() const = 0;  // kOpen: close now if no message is left
  virtual const char* timeout_text() const = 0;  // "timed out waiting for a reply"

  void Fail(const char* what, int error);  // session error: in flight lost, close, retry
  void Close();            // clean close (reconnects at once if messages are left)
  void MaybeCloseFd();     // kClosing: close the fd once no operation is pending on it
  void UpdateTimer();      // after every step: arm, push or cancel the I/O deadline
  void ArmRecv();
  void RecvDone(core::Operation& op, core::IoResult r);

  SendWorker* worker_;
  Link link_ = Link::kDisconnected;
  int fd_ = -1;
  core::Operation recv_op_;
  core::Operation send_op_;
  uint32_t backoff_ms_ = 0;  // the protocol resets it once a session works

 private:
  void ConnectDone(core::Operation& op, core::IoResult r);
  void CloseDone(core::Operation& op, core::IoResult r);
  void TimerFired(core::Timer& t);
  void Closed();
  void Finish();  // no reconnect: tell the worker

  core::Operation connect_op_;
  core::Operation close_op_;
  core::Timer timer_;
  uint64_t io_deadline_ms_ = 0;  // when the awaited answer is overdue
  bool error_close_ = false;     // the close was an error: reconnect after a backoff
};

}  // namespace ringmail::ringload
