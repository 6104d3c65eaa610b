import { EventEmitter } from 'node:events';
import type { ChatMessage, RuntimeViewEvents } from './runtime-view.ts';

/** The console's chat pane: the last messages between people and bots through the simulator, numbered. */
export class ChatHistory extends EventEmitter<Pick<RuntimeViewEvents, 'chat'>> {
  readonly #messages: ChatMessage[] = [];
  readonly #limit: number;
  #n = 0;

  constructor(limit = 500) {
    super();
    this.#limit = limit;
  }

  push(message: Omit<ChatMessage, 'n' | 'at'>): ChatMessage {
    const entry: ChatMessage = { ...message, n: ++this.#n, at: Date.now() };
    this.#messages.push(entry);
    if (this.#messages.length > this.#limit) this.#messages.shift();
    this.emit('chat', entry);
    return entry;
  }

  /** messages numbered above `n` */
  since(n = 0): ChatMessage[] {
    return this.#messages.filter((m) => m.n > n);
  }
}
