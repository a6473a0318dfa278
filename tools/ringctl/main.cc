// ringctl — the control CLI: sends one command to ringmaild's control socket and prints
// the answer. Links only listeners/control/protocol.
//
//   ringctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND [ARGS...]
//
// Exit status: 0 the daemon did it; 1 the daemon refused or failed; 2 usage error;
// 3 the daemon could not be reached.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "listeners/control/protocol.h"

namespace {

constexpr char kDefaultSocket[] = "./var/run/ringmail.sock";

constexpr char kUsage[] =
    "usage: ringctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND [ARGS...]\n"
    "commands:\n"
    "  summary                         uptime, loops, connections, messages, spool\n"
    "  config show [KEY] | config check FILE | config reload\n"
    "  threadpool list | threadpool set NAME concurrency N\n"
    "  eventloop list\n"
    "  queue summary [DOMAIN] | queue flush [DOMAIN]\n"
    "  domain suspend DOMAIN | domain resume DOMAIN\n"
    "  message show ID\n"
    "  license show\n"
    "  metrics                         Prometheus text\n"
    "  log reopen\n"
    "  shutdown [--now]\n"
    "options:\n"
    "  --socket PATH   control socket (default ./var/run/ringmail.sock,\n"
    "                  or $RINGMAIL_CONTROL_SOCKET)\n"
    "  --json          machine-readable output\n"
    "  --timeout S     give up after S seconds (default 30)\n";

int Usage(const char* why) {
  if (why != nullptr) std::fprintf(stderr, "ringctl: %s\n", why);
  std::fputs(kUsage, stderr);
  return 2;
}

int Connect(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) {
    std::fprintf(stderr, "ringctl: socket path too long: %s\n", path.c_str());
    return -1;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    std::fprintf(stderr, "ringctl: cannot reach ringmaild at %s: %s%s\n", path.c_str(),
                 std::strerror(err),
                 err == ENOENT || err == ECONNREFUSED ? " (is the daemon running?)" : "");
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

// Reads one response frame, waiting at most `timeout_ms` in all.
// `quiet`: no message of its own on failure (the caller has a better one).
int ReadResponse(int fd, int timeout_ms, ringmail::control::Response* out, bool quiet) {
  ringmail::control::ResponseDecoder decoder;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int rc = poll(&p, 1, timeout_ms);
    if (rc == 0) {
      if (!quiet) std::fprintf(stderr, "ringctl: no answer from ringmaild within the timeout\n");
      return 3;
    }
    if (rc < 0 && errno == EINTR) continue;
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!quiet) {
        std::fprintf(stderr, "ringctl: ringmaild closed the connection before answering\n");
      }
      return 3;
    }
    auto r = decoder.Feed(std::string_view(buf, static_cast<size_t>(n)));
    if (!r.ok()) {
      std::fprintf(stderr, "ringctl: garbled answer: %s\n",
                   std::string(r.status().message()).c_str());
      return 3;
    }
    if (r->has_value()) {
      *out = std::move(**r);
      return 0;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string socket_path = kDefaultSocket;
  if (const char* env = std::getenv("RINGMAIL_CONTROL_SOCKET")) socket_path = env;
  int timeout_s = 30;
  ringmail::control::Request request;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (request.words.empty() && (arg == "--help" || arg == "-h")) {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (request.words.empty() && arg == "--socket") {
      if (++i == argc) return Usage("--socket needs a path");
      socket_path = argv[i];
    } else if (request.words.empty() && arg == "--timeout") {
      if (++i == argc) return Usage("--timeout needs a number of seconds");
      timeout_s = std::atoi(argv[i]);
      if (timeout_s <= 0 || timeout_s > 3600) return Usage("--timeout must be 1..3600");
    } else if (arg == "--json") {
      request.json = true;
    } else if (request.words.empty() && arg.rfind("--", 0) == 0) {
      return Usage(("unknown option " + arg).c_str());
    } else {
      request.words.push_back(arg);
    }
  }
  if (request.words.empty()) return Usage("no command given");
  // `config check FILE` is read by the daemon, from its own working directory: a relative
  // FILE is made absolute here, against the caller's (else another file of the same name,
  // beside the daemon, was checked).
  std::vector<std::string>& w = request.words;
  if (w.size() == 3 && w[0] == "config" && w[1] == "check" && !w[2].empty() && w[2][0] != '/') {
    std::error_code ec;
    std::filesystem::path absolute = std::filesystem::absolute(w[2], ec);
    if (ec) return Usage(("cannot make " + w[2] + " absolute: " + ec.message()).c_str());
    w[2] = absolute.lexically_normal().string();
  }
  std::string line = ringmail::control::FormatRequestLine(request);
  if (line.size() > ringmail::control::kRequestLineMax) return Usage("command too long");
  int fd = Connect(socket_path);
  if (fd < 0) return 3;
  // A daemon that turns the client away (too many control clients) answers at once and
  // closes: the send then fails, and the answer is still there to read.
  const bool sent = SendAll(fd, line);
  ringmail::control::Response response;
  int rc = ReadResponse(fd, timeout_s * 1000, &response, /*quiet=*/!sent);
  if (!sent && rc != 0) std::fprintf(stderr, "ringctl: lost the connection to ringmaild\n");
  close(fd);
  if (rc != 0) return rc;
  std::fwrite(response.body.data(), 1, response.body.size(), response.ok ? stdout : stderr);
  if (!response.body.empty() && response.body.back() != '\n') {
    std::fputc('\n', response.ok ? stdout : stderr);
  }
  return response.ok ? 0 : 1;
}
