import type { PluginContext, PluginEvent } from 'qqbot-sdk-types';

interface HitokotoConfig {
  command: string;
  endpoint: string;
}

interface Hitokoto {
  hitokoto: string;
  from?: string;
  from_who?: string | null;
}

type MessageEvent = PluginEvent<'AT_MESSAGE_CREATE' | 'GROUP_AT_MESSAGE_CREATE' | 'C2C_MESSAGE_CREATE'>;

export default function setup(ctx: PluginContext<HitokotoConfig>): void {
  const handle = async (event: MessageEvent) => {
    const text = (event.data.content ?? '').replace(/<@!?\w+>/g, '').trim();
    if (text !== ctx.config.command) return;
    try {
      const res = await ctx.fetch(`${ctx.config.endpoint}?encode=json`, { headers: { accept: 'application/json' } });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      const quote = res.json<Hitokoto>();
      const source = [quote.from_who, quote.from].filter(Boolean).join(', ');
      await event.reply(source ? `「${quote.hitokoto}」 —— ${source}` : `「${quote.hitokoto}」`);
    } catch (error) {
      ctx.logger.warn('hitokoto failed', (error as Error).message);
      await event.reply('no quote right now, try again later');
    }
  };
  ctx.on('AT_MESSAGE_CREATE', handle);
  ctx.on('GROUP_AT_MESSAGE_CREATE', handle);
  ctx.on('C2C_MESSAGE_CREATE', handle);
}
