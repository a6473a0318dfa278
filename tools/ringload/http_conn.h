// tools/ringload/http_conn.h — `ringload send --http`: one keep-alive HTTP/1.1 connection to
// ringmaild's injection API (POST /api/inject/v1), on one SendWorker's loop.
//
// Each message is one request whose JSON body is rendered by MessageFactory: the per-message
// part (envelope, headers) is copied, the JSON-escaped body goes out straight from the
// shared rendering (one sendmsg with iovecs, as in SMTP mode). Closed loop, a connection
// sends its next request when the previous answer came; with --pipelining it keeps up to
// kPipelineDepth requests in flight. Messages, rate, latency and counters are the worker's,
// exactly as for SMTP; reply codes are HTTP statuses.
//
// Responses are framed by HttpResponseReader (http_response.h); anything it refuses is a
// session error, never a crash. Created and used on the worker's loop thread only.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/loop.h"
#include "tools/ringload/http_response.h"
#include "tools/ringload/options.h"
#include "tools/ringload/sender.h"

namespace ringmail::ringload {

// "POST <path> HTTP/1.1\r\nHost: ...\r\n[Authorization...]Content-Type: ...\r\n
// Content-Length: " — the part of every request head that does not change.
std::string HttpRequestPrefix(const SendOptions& options);

class HttpConn final : public SendConn {
 public:
  static constexpr size_t kPipelineDepth = 4;

  HttpConn(SendWorker* worker, uint32_t slot);
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;
  ~HttpConn() override = default;

  void Resume() override;

 private:
  struct Request {
    MessageTicket ticket;
    uint64_t start_us = 0;
    uint64_t bytes = 0;  // the message (headers + body), as in SMTP mode
  };
  // A piece of the next sendmsg: text at [offset, offset + len) of the batch's text, or a
  // shared body (text is kept as offsets because the string may grow while composing).
  struct Piece {
    size_t offset = 0;
    size_t len = 0;
    std::string_view shared;
  };
  struct Batch {
    std::string text;
    std::vector<Piece> pieces;
    size_t bytes = 0;
    void Clear() {
      text.clear();
      pieces.clear();
      bytes = 0;
    }
  };

  // SendConn's hooks.
  void ResetSession() override;
  void Opened() override;
  void Received(std::string_view data) override;
  void PeerClosed() override;
  void RecvFailed(int error) override { Fail("recv", error); }
  bool AwaitingAnswer() const override { return request_count_ > 0; }
  size_t TakeInFlight() override;
  bool CloseWhenAbandoned() const override { return request_count_ == 0; }
  const char* timeout_text() const override { return "timed out waiting for a response"; }

  bool open() const { return link_ == Link::kOpen; }
  void SendDone(core::Operation& op, core::IoResult r);
  void Fill();  // take messages while there is room in the pipeline
  void Compose(const MessageTicket& ticket);
  void AddText(size_t from);
  void Flush();
  void SubmitSend();
  void OnResponse(const HttpResponseReader::Response& r);
  size_t depth() const;

  bool parked_ = false;
  bool server_closing_ = false;  // a response said Connection: close
  uint64_t messages_on_conn_ = 0;

  Request requests_[kPipelineDepth];
  size_t request_head_ = 0;
  size_t request_count_ = 0;

  HttpResponseReader reader_;
  std::string json_;  // the per-message JSON prefix being rendered
  Batch compose_;
  Batch sending_;
  std::vector<iovec> iov_;
  msghdr msg_{};
  size_t send_done_ = 0;
};

}  // namespace ringmail::ringload
