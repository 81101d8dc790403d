/*
 * How the fixed RTMPE vectors in tests/rtmp/test_rtmpe.py were produced.
 *
 * This driver compiles librtmp's own RTMPE code (handshake.h and dh.h from
 * rtmpdump's git, the GnuTLS/nettle/GMP back end Debian builds) with fixed
 * private keys, and prints public keys, the shared secret, the first RC4
 * keystream bytes after the 1536-byte warm-up in both directions, and
 * librtmp's XTEA (type 8) and Blowfish (type 9) encryption of the block
 * 00..07 under each of the fifteen keys.  It is not built by the test suite.
 *
 *   git clone https://git.ffmpeg.org/rtmpdump && cd rtmpdump
 *   gcc -w -DUSE_GNUTLS -Ilibrtmp -o oracle librtmp_rtmpe_oracle.c -lhogweed -lnettle -lgmp
 *   ./oracle CLIENT_PRIVATE_HEX SERVER_PRIVATE_HEX
 *
 * GnuTLS builds of librtmp lay a shared secret with a zero top byte out
 * left-padded; that is what the second vector shows.
 */
#include <stdio.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <gmp.h>
#include "rtmp_sys.h"
#include "log.h"
#define RTMP_SIG_SIZE 1536
static int ReadN(RTMP *r, char *buffer, int n) { return 0; }
static int WriteN(RTMP *r, const char *buffer, int n) { return 0; }
void RTMP_Log(int level, const char *format, ...) {}
void RTMP_LogHex(int level, const uint8_t *data, unsigned long len) {}
uint32_t RTMP_GetTime(void) { return 0; }
char *AMF_EncodeInt32(char *output, char *outend, int nVal) { return output; }
static mpz_ptr preset_priv;
mpz_ptr gnutls_calc_dh_secret(mpz_ptr *priv, mpz_ptr g, mpz_ptr p) {
  mpz_ptr y = malloc(sizeof(*y)); mpz_init(y);
  *priv = malloc(sizeof(**priv)); mpz_init_set(*priv, preset_priv);
  mpz_powm(y, g, *priv, p); return y;
}
mpz_ptr gnutls_calc_dh_key(mpz_ptr y, mpz_ptr x, mpz_ptr p) {
  mpz_ptr k = malloc(sizeof(*k)); mpz_init(k); mpz_powm(k, y, x, p); return k;
}
#include "handshake.h"
static void hex(const char *name, const uint8_t *b, size_t n) {
  printf("%s ", name); for (size_t i = 0; i < n; i++) printf("%02x", b[i]); printf("\n");
}
static MDH *make(const char *xhex, uint8_t *pub) {
  MDH *dh = DHInit(1024);
  preset_priv = malloc(sizeof(*preset_priv)); mpz_init_set_str(preset_priv, xhex, 16);
  if (!DHGenerateKey(dh) || !DHGetPublicKey(dh, pub, 128)) { fprintf(stderr, "keygen\n"); exit(1); }
  return dh;
}
int main(int argc, char **argv) {
  uint8_t pc[128], ps[128], kc[128] = {0}, ks[128] = {0}, buf[RTMP_SIG_SIZE];
  MDH *c = make(argv[1], pc), *s = make(argv[2], ps);
  hex("client_public", pc, 128); hex("server_public", ps, 128);
  if (DHComputeSharedSecretKey(c, ps, 128, kc) < 0 || DHComputeSharedSecretKey(s, pc, 128, ks) < 0) return 1;
  hex("secret_client", kc, 128); hex("secret_server", ks, 128);
  /* client side: keyOut encrypts client->server, keyIn decrypts server->client */
  RC4_handle in, out;
  InitRC4Encryption(kc, ps, pc, &in, &out);
  RC4_encrypt(in, RTMP_SIG_SIZE, buf); RC4_encrypt(out, RTMP_SIG_SIZE, buf);
  uint8_t z[48];
  memset(z, 0, 48); RC4_encrypt(out, 48, z); hex("keystream_client_to_server", z, 48);
  memset(z, 0, 48); RC4_encrypt(in, 48, z); hex("keystream_server_to_client", z, 48);
  for (int k = 0; k < 15; k++) {
    uint8_t blk[8] = {0, 1, 2, 3, 4, 5, 6, 7}, o[8];
    char name[32];
    rtmpe8_sig(blk, o, k); sprintf(name, "xtea_%d", k); hex(name, o, 8);
    rtmpe9_sig(blk, o, k); sprintf(name, "blowfish_%d", k); hex(name, o, 8);
  }
  return 0;
}
