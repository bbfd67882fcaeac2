/*
 * Descriptor duplication for the direct transport.
 *
 * Node 20 cannot post a net.Socket to a worker thread. The main thread duplicates the accepted
 * descriptor here, closes its own socket, and posts the duplicate's number to a shard, which
 * opens it with `new net.Socket({ fd })`. The duplicate carries FD_CLOEXEC so that child
 * processes never inherit client connections.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <node_api.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s failed: %s", what, strerror(err));
  napi_throw_error(env, "ERR_SHARDTLS_FD", message);
  return NULL;
}

static int read_fd(napi_env env, napi_callback_info info, int32_t *fd) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_int32(env, argv[0], fd) != napi_ok || *fd < 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "the descriptor must be an integer >= 0");
    return 0;
  }
  return 1;
}

/* dup(fd) -> new descriptor number, close-on-exec. Throws on failure (EMFILE, EBADF). */
static napi_value dup_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!read_fd(env, info, &fd)) return NULL;

  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return throw_errno(env, "dup", errno);

  napi_value result;
  napi_create_int32(env, copy, &result);
  return result;
}

/* close(fd) for a duplicate that was never handed to a socket (for example a shard that died). */
static napi_value close_fd(napi_env env, napi_callback_info info) {
  int32_t fd;
  if (!read_fd(env, info, &fd)) return NULL;

  if (close(fd) != 0 && errno != EINTR) return throw_errno(env, "close", errno);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"dupFd", NULL, dup_fd, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }
