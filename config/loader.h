// config/loader.h — turns a parsed tree into a typed Config (schema and semantic checks).
//
// Internal to config/: other folders call LoadConfigFile / LoadConfigString
// (config/generation.h). Reports every error it finds to the Diagnostics, at the position of
// the offending name or value; the Config is meaningful only when no error was reported.
// Single-threaded; the result is handed over to the caller.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/diagnostics.h"
#include "config/parser.h"

namespace ringmail::config {

// Where an unset control socket goes.
inline constexpr std::string_view kDefaultControlSocket = "./var/run/ringmail.sock";
// sockaddr_un::sun_path holds 108 bytes including the terminating NUL.
inline constexpr size_t kMaxSocketPathBytes = 107;
inline constexpr size_t kMaxPoolNameBytes = 64;

std::shared_ptr<Config> BuildConfig(const std::vector<Node>& nodes, std::string source,
                                    Diagnostics* diagnostics);

}  // namespace ringmail::config
