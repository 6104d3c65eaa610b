import type { PluginContext, PluginEvent } from 'qqbot-sdk-types';

interface EchoConfig {
  prefix: string;
}

/** Guild messages start with the bot mention (`<@!123> hi`); echo what the user typed. */
export function stripMentions(content: string): string {
  return content.replace(/<@!?\w+>/g, '').trim();
}

export default function setup(ctx: PluginContext<EchoConfig>): void {
  const echo = async (event: PluginEvent<'AT_MESSAGE_CREATE' | 'DIRECT_MESSAGE_CREATE' | 'GROUP_AT_MESSAGE_CREATE' | 'C2C_MESSAGE_CREATE'>) => {
    const text = stripMentions(event.data.content ?? '');
    if (text === '') return;
    await event.reply(`${ctx.config.prefix}${text}`);
  };
  ctx.on('AT_MESSAGE_CREATE', echo);
  ctx.on('DIRECT_MESSAGE_CREATE', echo);
  ctx.on('GROUP_AT_MESSAGE_CREATE', echo);
  ctx.on('C2C_MESSAGE_CREATE', echo);
}
