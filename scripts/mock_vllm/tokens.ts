/**
 * A deterministic stand-in tokenizer and the canned reply.
 *
 * Prompt tokens are a word/punctuation split; chat prompts add the tokens of a
 * Qwen-style template (`<|im_start|>role\n … <|im_end|>\n` per message plus
 * `<|im_start|>assistant\n`), so `[{"role":"user","content":"Hello"}]` counts 9
 * tokens, matching the worked example in vllm-wire.md §5.1.
 *
 * @module
 */

/** vLLM's default KV block size in tokens. */
export const BLOCK_SIZE = 16;

/** `max_model_len` reported by `/v1/models` and `/tokenize`. */
export const MAX_MODEL_LEN = 40_960;

/** Template tokens around each chat message: `<|im_start|>`, role, `\n`, `<|im_end|>`, `\n`. */
const TOKENS_PER_MESSAGE = 5;

/** `<|im_start|>assistant\n` appended by `add_generation_prompt`. */
const GENERATION_PROMPT_TOKENS = 3;

/** One chat message reduced to its role and plain text. */
export interface ChatText {
  readonly role: string;
  readonly text: string;
}

/** The canned reply, one word-ish token per entry. */
const CANNED_REPLY: readonly string[] = [
  "Hello",
  "!",
  " This",
  " is",
  " a",
  " mock",
  " reply",
  " from",
  " vLLM",
  " for",
  " you",
  ".",
];

/** Splits text into word and punctuation pieces. */
export function splitWords(text: string): string[] {
  return text.match(/[\p{L}\p{N}_]+|[^\p{L}\p{N}_\s]/gu) ?? [];
}

/** Prompt tokens of a chat conversation including template tokens. */
export function countChatTokens(messages: readonly ChatText[]): number {
  let total = GENERATION_PROMPT_TOKENS;
  for (const message of messages) {
    total += TOKENS_PER_MESSAGE + splitWords(message.text).length;
  }
  return total;
}

/** The chat prompt as vLLM would log it after applying a Qwen-style template. */
export function renderChatPrompt(messages: readonly ChatText[]): string {
  const parts = messages.map((m) =>
    `<|im_start|>${m.role}\n${m.text}<|im_end|>\n`
  );
  return `${parts.join("")}<|im_start|>assistant\n`;
}

/** The first `count` tokens of the canned reply, repeating it when `count` exceeds its length. */
export function cannedTokens(count: number): string[] {
  const tokens: string[] = [];
  for (let i = 0; i < count; i++) {
    const token = CANNED_REPLY[i % CANNED_REPLY.length] ?? "";
    // A repeated reply starts a new sentence, so its first word needs its leading space.
    tokens.push(
      i >= CANNED_REPLY.length && !token.startsWith(" ") && /\p{L}/u.test(token)
        ? ` ${token}`
        : token,
    );
  }
  return tokens;
}

/** Stable pseudo token ids for `/tokenize` (FNV-1a of the piece, folded into a 150k vocabulary). */
export function tokenIdsOf(pieces: readonly string[]): number[] {
  return pieces.map((piece) => {
    let hash = 0x811c9dc5;
    for (let i = 0; i < piece.length; i++) {
      hash ^= piece.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return hash % 150_000;
  });
}
