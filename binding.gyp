{
  "targets": [
    {
      "target_name": "shardtls_tls",
      "sources": [
        "src/tls/native/module.c",
        "src/tls/native/napi-util.c",
        "src/tls/native/context.c",
        "src/tls/native/engine.c",
        "src/tls/native/engine-io.c",
        "src/tls/native/info.c"
      ],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"],
      "libraries!": ["-lssl", "-lcrypto"]
    },
    {
      "target_name": "shardtls_fd",
      "sources": ["src/main/native/fd.c"],
      "cflags": ["-std=c11", "-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8"]
    }
  ]
}
