// core/send_queue.h — what a connection still has to send, for one ring SEND at a time.
//
// A connection keeps at most one SEND in flight (its buffer must stay put until the
// completion). Bytes queued while one is in flight wait and leave together in the next,
// so a pipelined group's replies go in as few sends as possible; a short send resumes
// where it stopped. The two buffers are cleared, never given back, between sends: a
// session that answers every command reuses them instead of allocating per reply.
//
// Use (the caller owns the Operation, the fd and the error policy):
//   if (out_.Queue(bytes)) StartSend();        StartSend: out_.PrepareSend(sqe, fd)
//   SendDone(n bytes): if (out_.Sent(n)) StartSend();  // else nothing left to send
//   on an error or a close: out_.Clear()
// Loop-owned like the connection that holds it; not thread-safe.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace ringmail::core {

class SendQueue {
 public:
  // Copies `bytes` in (into reused capacity). True when no send was in flight: the caller
  // starts one now. Empty bytes queue nothing and return false.
  bool Queue(std::string_view bytes);
  // The same for bytes the caller built in a string of its own (TLS records, a body in
  // ciphertext): adopted without a copy when nothing is in flight.
  bool Queue(std::string&& bytes);

  // Prepares `sqe` as a SEND of the unsent part of the send in flight (MSG_NOSIGNAL).
  void PrepareSend(io_uring_sqe* sqe, int fd) const;

  // The send in flight wrote `n` bytes. True when there is more to send now — the rest of a
  // short send, or what was queued meanwhile — and the caller starts the next send.
  bool Sent(size_t n);

  // Drops everything, sent or not (the connection failed or is closing).
  void Clear();

  bool sending() const { return !sending_.empty(); }  // a send is in flight
  size_t in_flight_bytes() const { return sending_.size() - sent_; }  // its unsent part
  size_t queued_bytes() const { return queued_.size(); }
  size_t backlog_bytes() const { return in_flight_bytes() + queued_.size(); }

 private:
  std::string sending_;  // the bytes of the send in flight
  size_t sent_ = 0;      // of sending_, by earlier (short) sends
  std::string queued_;   // queued while a send was in flight
};

}  // namespace ringmail::core
