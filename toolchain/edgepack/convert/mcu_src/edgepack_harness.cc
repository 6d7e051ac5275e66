// edgepack's board harness: TensorFlow Lite Micro on the model in flash, driven over a serial
// port by `edgepack bench --device serial:PORT` (protocol: docs/serial-protocol.md).
// Generated into every microcontroller bundle by edgepack.
//
// Build it with the bundle's model_data.cc, model_ops.h, edgepack_wire.c and TFLM (see
// edgepack_model.cmake), and give it the four board functions declared below; then call
// edgepack_harness_main() from main() after the clocks and the UART are set up. It never returns.

#include <stddef.h>
#include <stdint.h>

#include "edgepack_wire.h"
#include "model_data.h"
#include "model_ops.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/schema/schema_generated.h"

extern "C" {
// The board's side: a non-blocking read of one received byte (-1 when none), a blocking write,
// the CPU clock in Hz (e.g. SystemCoreClock) and the trigger pin a power meter watches (high
// while a LOOP runs; a board without one may do nothing).
int edgepack_uart_getc(void);
void edgepack_uart_write(const uint8_t* data, size_t n);
uint32_t edgepack_cpu_hz(void);
void edgepack_trigger(int high);
void edgepack_harness_main(void);
}

namespace {

constexpr char kFirmware[] = "edgepack-harness 1";
// A frame: header, the largest tensor plus the cycle count (or HELLO_OK's fields), CRC.
constexpr size_t kMaxFrame = EP_HEADER_BYTES + EDGEPACK_MAX_TENSOR_BYTES + 64 + EP_CRC_BYTES;

// The DWT cycle counter (Cortex-M3 and later; the lock access register matters on the M7).
volatile uint32_t& Reg(uint32_t address) { return *reinterpret_cast<volatile uint32_t*>(address); }

void CyclesInit() {
  Reg(0xE000EDFCu) |= 1u << 24;   // DEMCR.TRCENA
  Reg(0xE0001FB0u) = 0xC5ACCE55u;  // DWT_LAR unlock
  Reg(0xE0001004u) = 0;            // DWT_CYCCNT
  Reg(0xE0001000u) |= 1u;          // DWT_CTRL.CYCCNTENA
}

uint32_t Cycles() { return Reg(0xE0001004u); }

alignas(16) uint8_t tensor_arena[kTensorArenaSize];
uint8_t rx[kMaxFrame];
uint8_t tx[kMaxFrame];
uint8_t* const payload = tx + EP_HEADER_BYTES;  // replies are written in place, then framed around

void Send(uint8_t type, uint8_t seq, const uint8_t* data, uint32_t n) {
  size_t len = ep_encode(tx, sizeof tx, type, seq, data, n);  // data is payload: copied onto itself
  if (len) edgepack_uart_write(tx, len);
}

void SendError(uint8_t seq, uint16_t code, const char* message) {
  size_t n = 2;
  ep_put_u16(payload, code);
  while (message[n - 2] && n < 200) {
    payload[n] = static_cast<uint8_t>(message[n - 2]);
    ++n;
  }
  Send(EP_ERROR, seq, payload, static_cast<uint32_t>(n));
}

size_t Name(uint8_t* out) {
  size_t n = 0;
  while (kFirmware[n]) {
    out[n] = static_cast<uint8_t>(kFirmware[n]);
    ++n;
  }
  return n;
}

}  // namespace

void edgepack_harness_main(void) {
  CyclesInit();
  static tflite::MicroMutableOpResolver<kEdgepackOpCount> resolver;
  const bool ops_ok = edgepack_add_ops(resolver) == kTfLiteOk;
  static tflite::MicroInterpreter interpreter(tflite::GetModel(g_model), resolver, tensor_arena, kTensorArenaSize);
  const bool ready = ops_ok && interpreter.AllocateTensors() == kTfLiteOk;
  TfLiteTensor* input = interpreter.input(0);
  TfLiteTensor* output = interpreter.output(0);

  ep_put_u16(payload, EP_PROTOCOL_VERSION);
  Send(EP_BOOT, 0, payload, static_cast<uint32_t>(2 + Name(payload + 2)));

  ep_decoder decoder;
  ep_decoder_init(&decoder, rx, sizeof rx);
  for (;;) {
    int c = edgepack_uart_getc();
    if (c < 0) continue;
    int got = ep_decode_byte(&decoder, static_cast<uint8_t>(c));
    if (got < 0) {
      SendError(0, EP_ERR_FRAME, "bad frame (length or CRC)");
      continue;
    }
    if (got == 0) continue;
    const uint8_t type = ep_frame_type(&decoder), seq = ep_frame_seq(&decoder);
    const uint8_t* in = ep_frame_payload(&decoder);
    const uint32_t n = ep_frame_length(&decoder);
    if (!ready && type != EP_HELLO) {
      SendError(seq, EP_ERR_TFLM, "TFLM could not set up the model (operators or arena)");
      continue;
    }
    if (type == EP_HELLO) {
      ep_put_u16(payload, EP_PROTOCOL_VERSION);
      ep_put_u32(payload + 2, edgepack_cpu_hz());
      ep_put_u32(payload + 6, ready ? static_cast<uint32_t>(interpreter.arena_used_bytes()) : 0u);
      ep_put_u32(payload + 10, g_model_len);
      ep_put_u32(payload + 14, ready ? static_cast<uint32_t>(input->bytes) : 0u);
      ep_put_u32(payload + 18, ready ? static_cast<uint32_t>(output->bytes) : 0u);
      for (int i = 0; i < 32; ++i) payload[22 + i] = g_model_sha256[i];
      Send(EP_HELLO_OK, seq, payload, static_cast<uint32_t>(54 + Name(payload + 54)));
    } else if (type == EP_INFER) {
      if (n != input->bytes) {
        SendError(seq, EP_ERR_INPUT_SIZE, "the input is not the model's input tensor size");
        continue;
      }
      for (uint32_t i = 0; i < n; ++i) input->data.uint8[i] = in[i];
      const uint32_t start = Cycles();
      const TfLiteStatus status = interpreter.Invoke();
      const uint32_t spent = Cycles() - start;  // modulo 2^32: one inference stays far below that
      if (status != kTfLiteOk) {
        SendError(seq, EP_ERR_TFLM, "Invoke() failed");
        continue;
      }
      ep_put_u64(payload, spent);
      for (size_t i = 0; i < output->bytes; ++i) payload[8 + i] = output->data.uint8[i];
      Send(EP_OUTPUT, seq, payload, static_cast<uint32_t>(8 + output->bytes));
    } else if (type == EP_LOOP && n == 4) {
      const uint32_t count = ep_get_u32(in);
      uint64_t total = 0;
      uint32_t done = 0;
      edgepack_trigger(1);
      for (; done < count; ++done) {
        const uint32_t start = Cycles();
        if (interpreter.Invoke() != kTfLiteOk) break;
        total += Cycles() - start;
      }
      edgepack_trigger(0);
      ep_put_u32(payload, done);
      ep_put_u64(payload + 4, total);
      Send(EP_LOOP_DONE, seq, payload, 12);
    } else {
      SendError(seq, EP_ERR_TYPE, "unknown message type");
    }
  }
}
