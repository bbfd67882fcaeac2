/*
 * The per-record engine calls: handshake, plaintext in and out, and the ciphertext side.
 *
 * They return a number: a byte count or one of the engine codes. They allocate nothing and
 * throw only for caller bugs (TypeError, RangeError) and for protocol or certificate failures,
 * which end the connection. A call that succeeds does no OpenSSL error-queue work beyond one
 * ERR_peek_error before its SSL call.
 */
#include "shardtls.h"

/* Reads argv[0] as an engine and the rest of up to `count` arguments. */
#define ENGINE_ARGS(count)                                    \
  size_t argc = (count);                                      \
  napi_value argv[(count)];                                   \
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);       \
  if (argc < (count)) return throw_type(env, "missing arguments"); \
  engine *e = get_engine(env, argv[0]);                       \
  if (e == NULL) return NULL

/* handshake(h) -> 1 or an engine code. */
napi_value engine_handshake(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  if (e->failed) return throw_failure(env, e);
  if (SSL_is_init_finished(e->ssl)) return int_value(env, 1);

  mark_active(e);
  clear_errors();
  int r = SSL_do_handshake(e->ssl);
  if (r == 1) e->established = true;
  return finish(env, e, r == 1 ? 1 : map_result(e, r));
}

napi_value engine_handshake_done(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  return bool_value(env, SSL_is_init_finished(e->ssl));
}

/* write(h, src, offset, length) -> bytes consumed or an engine code. */
napi_value engine_write(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *src;
  int length;
  if (!get_range(env, argv + 1, &src, &length)) return NULL;
  if (e->failed) return throw_failure(env, e);
  if (SSL_get_shutdown(e->ssl) & SSL_SENT_SHUTDOWN) return int_value(env, SHARDTLS_EOF_GRACEFUL);
  if (length == 0) return int_value(env, 0);

  mark_active(e);
  clear_errors();
  int r = SSL_write(e->ssl, src, length);
  if (r > 0) {
    e->established = true;
    return int_value(env, r);
  }
  return finish(env, e, map_result(e, r));
}

/* read(h, dst, offset, length) -> bytes read or an engine code. */
napi_value engine_read(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *dst;
  int length;
  if (!get_range(env, argv + 1, &dst, &length)) return NULL;
  if (e->failed) return throw_failure(env, e);
  if (length == 0) return int_value(env, 0);

  mark_active(e);
  clear_errors();
  int r = SSL_read(e->ssl, dst, length);
  if (r > 0) {
    e->established = true;
    return int_value(env, r);
  }
  return finish(env, e, map_result(e, r));
}

/* Returns this thread's result array, or NULL after throwing when setResultArray never ran. */
static int32_t *get_results(napi_env env, engine *e) {
  int32_t *results = e->state->results;
  if (results == NULL) {
    napi_throw_error(env, "ERR_TLS_NO_RESULT_ARRAY", "setResultArray was not called");
  }
  return results;
}

/*
 * writeOut(h, src, offset, length, dst, dstOffset, dstLength, take) -> bytes consumed or an
 * engine code, as write() returns. Then copies pending ciphertext into dst and stores the
 * count in results[RESULT_MOVED]: with `take` it is also consumed (takeOutput, across the
 * ring's wrap), without it nothing is consumed (peekOutput, up to the wrap). The copy runs
 * after every result except a thrown failure, so NEED_WRITE also hands out what is pending.
 * One Node-API call replaces write + outputPending + peekOutput (+ consumeOutput).
 */
napi_value engine_write_out(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(8);
  uint8_t *src, *dst;
  int length, room;
  bool take = false;
  if (!get_range(env, argv + 1, &src, &length) || !get_range(env, argv + 4, &dst, &room)) {
    return NULL;
  }
  napi_get_value_bool(env, argv[7], &take);
  int32_t *results = get_results(env, e);
  if (results == NULL) return NULL;
  results[RESULT_MOVED] = 0;
  if (e->failed) return throw_failure(env, e);

  int code = 0;
  if (SSL_get_shutdown(e->ssl) & SSL_SENT_SHUTDOWN) {
    code = SHARDTLS_EOF_GRACEFUL;
  } else if (length > 0) {
    mark_active(e);
    clear_errors();
    int r = SSL_write(e->ssl, src, length);
    if (r > 0) {
      e->established = true;
      code = r;
    } else {
      code = map_result(e, r);
      clear_errors();
      if (code == 0 && e->failed) return throw_failure(env, e);
    }
  }

  if (room > 0) {
    int n;
    if (take) {
      n = BIO_read(e->network, dst, room);
    } else {
      char *data;
      n = BIO_nread0(e->network, &data);
      if (n > room) n = room;
      if (n > 0) memcpy(dst, data, (size_t)n);
    }
    results[RESULT_MOVED] = n > 0 ? n : 0;
  }
  return int_value(env, code);
}

/*
 * pushRead(h, src, offset, length, dst, dstOffset, dstLength) -> bytes read or an engine code,
 * as read() returns. First pushes ciphertext from src, as writeInput does, and stores the bytes
 * accepted in results[RESULT_MOVED] (fewer than `length` when the input buffer fills). One
 * Node-API call replaces writeInput + read.
 */
napi_value engine_push_read(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(7);
  uint8_t *src, *dst;
  int length, room;
  if (!get_range(env, argv + 1, &src, &length) || !get_range(env, argv + 4, &dst, &room)) {
    return NULL;
  }
  int32_t *results = get_results(env, e);
  if (results == NULL) return NULL;
  results[RESULT_MOVED] = 0;
  if (e->failed) return throw_failure(env, e);

  if (length > 0) {
    int n = BIO_write(e->network, src, length);
    results[RESULT_MOVED] = n > 0 ? n : 0;
  }
  if (room == 0) {
    clear_errors();
    return int_value(env, 0);
  }

  mark_active(e);
  clear_errors();
  int r = SSL_read(e->ssl, dst, room);
  if (r > 0) {
    e->established = true;
    return int_value(env, r);
  }
  return finish(env, e, map_result(e, r));
}

/*
 * shutdown(h) -> 1 when close_notify went both ways, 0 when ours is queued, or NEED_WRITE.
 * RFC 8446 section 6.1: each side sends close_notify and may close without waiting for the
 * peer's, so 0 is a normal result.
 */
napi_value engine_shutdown(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  if (e->failed) return throw_failure(env, e);
  if (!SSL_is_init_finished(e->ssl)) {
    /* No keys yet, so no close_notify can be sent. */
    return int_value(env, 1);
  }

  mark_active(e);
  clear_errors();
  int r = SSL_shutdown(e->ssl);
  int code = r;
  if (r < 0) {
    code = map_result(e, r);
    /* Waiting for the peer's close_notify is not an error here. */
    if (code == SHARDTLS_NEED_READ) code = 0;
    if (code == SHARDTLS_EOF_GRACEFUL) code = 1;
  }
  return finish(env, e, code);
}

napi_value engine_output_pending(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  return int_value(env, (int64_t)BIO_ctrl_pending(e->network));
}

/*
 * peekOutput(h, dst, offset, length) -> bytes copied. The pair is a ring buffer, so after a
 * partial consumeOutput the pending bytes can wrap. Then this copies the contiguous part up to
 * the wrap, fewer than outputPending(); consumeOutput then peekOutput again to get the rest.
 */
napi_value engine_peek_output(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *dst;
  int length;
  if (!get_range(env, argv + 1, &dst, &length)) return NULL;

  char *data;
  int available = BIO_nread0(e->network, &data);
  if (available <= 0) return int_value(env, 0);
  int n = available < length ? available : length;
  memcpy(dst, data, (size_t)n);
  return int_value(env, n);
}

/*
 * consumeOutput(h, n) -> bytes still pending. Drops n pending bytes; RangeError when n exceeds
 * outputPending(). Returning the rest saves the outputPending() call that usually follows.
 */
napi_value engine_consume_output(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(2);
  int64_t n;
  if (napi_get_value_int64(env, argv[1], &n) != napi_ok) {
    return throw_type(env, "n must be a number");
  }
  if (n < 0 || (size_t)n > BIO_ctrl_pending(e->network)) {
    return throw_range(env, "cannot consume more output than is pending");
  }
  while (n > 0) {
    char *data;
    int step = BIO_nread(e->network, &data, n > INT32_MAX ? INT32_MAX : (int)n);
    if (step <= 0) break;
    n -= step;
  }
  return int_value(env, (int64_t)BIO_ctrl_pending(e->network));
}

/*
 * takeOutput(h, dst, offset, length) -> bytes moved. peekOutput and consumeOutput in one call,
 * across the ring's wrap, for an upstream that always takes everything it is given.
 */
napi_value engine_take_output(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *dst;
  int length;
  if (!get_range(env, argv + 1, &dst, &length)) return NULL;
  if (length == 0) return int_value(env, 0);
  int n = BIO_read(e->network, dst, length);
  return int_value(env, n > 0 ? n : 0);
}

napi_value engine_input_space(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  return int_value(env, (int64_t)BIO_ctrl_get_write_guarantee(e->network));
}

/* writeInput(h, src, offset, length) -> bytes accepted (0 when the input buffer is full). */
napi_value engine_write_input(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(4);
  uint8_t *src;
  int length;
  if (!get_range(env, argv + 1, &src, &length)) return NULL;
  if (length == 0) return int_value(env, 0);
  int n = BIO_write(e->network, src, length);
  clear_errors();
  return int_value(env, n > 0 ? n : 0);
}

/* writeInputEof(h): SSL reads the buffered input, then sees the end of the stream. */
napi_value engine_write_input_eof(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  (void)BIO_shutdown_wr(e->network);
  return undefined_value(env);
}

/*
 * transfer(from, to) -> bytes moved from `from`'s output to `to`'s input. Two engines in one
 * thread (tests, benchmarks) exchange ciphertext without a JavaScript copy.
 */
napi_value engine_transfer(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(2);
  engine *to = get_engine(env, argv[1]);
  if (to == NULL) return NULL;
  int64_t moved = 0;
  for (;;) {
    char *data;
    int available = BIO_nread0(e->network, &data);
    if (available <= 0) break;
    int n = BIO_write(to->network, data, available);
    if (n <= 0) break;
    BIO_nread(e->network, &data, n);
    moved += n;
    if (n < available) break;
  }
  clear_errors();
  return int_value(env, moved);
}

/*
 * keyUpdate(h, requestPeer) -> 1, or 0 before the handshake ends or below TLS 1.3.
 * RFC 8446 section 4.6.3. SSL_do_handshake right after queues the message in the output at
 * once; when the output is full it goes out with the next write instead.
 */
napi_value engine_key_update(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(2);
  bool request_peer;
  mark_active(e);
  napi_get_value_bool(env, argv[1], &request_peer);
  if (e->failed) return throw_failure(env, e);
  if (!SSL_is_init_finished(e->ssl) || SSL_version(e->ssl) != TLS1_3_VERSION) {
    return int_value(env, 0);
  }

  clear_errors();
  int type = request_peer ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED;
  if (SSL_key_update(e->ssl, type) != 1) {
    clear_errors();
    return int_value(env, 0);
  }
  int r = SSL_do_handshake(e->ssl);
  int code = r == 1 ? 1 : map_result(e, r);
  if (code == SHARDTLS_NEED_WRITE || code == SHARDTLS_NEED_READ) code = 1;
  return finish(env, e, code);
}

/* closeReason(h) -> the fatal alert text behind the last EOF_ABRUPT, or null. */
napi_value engine_close_reason(napi_env env, napi_callback_info info) {
  ENGINE_ARGS(1);
  return string_value(env, e->close_reason[0] ? e->close_reason : NULL);
}
