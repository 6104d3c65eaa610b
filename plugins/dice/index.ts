import type { PluginContext, PluginEvent } from 'qqbot-sdk-types';
import { parseRoll, rollDice } from './dice.ts';

interface DiceConfig {
  command: string;
  maxDice: number;
  maxSides: number;
}

export interface UserStats {
  rolls: number;
  total: number;
  best: number;
}

type MessageEvent = PluginEvent<'AT_MESSAGE_CREATE' | 'GROUP_AT_MESSAGE_CREATE' | 'C2C_MESSAGE_CREATE'>;

function userOf(event: MessageEvent): string {
  const author = event.data.author as { id?: string; member_openid?: string; user_openid?: string };
  return author.user_openid ?? author.member_openid ?? author.id ?? 'unknown';
}

export default function setup(ctx: PluginContext<DiceConfig>): void {
  const { command, maxDice, maxSides } = ctx.config;

  const handle = async (event: MessageEvent) => {
    const text = (event.data.content ?? '').replace(/<@!?\w+>/g, '').trim();
    if (!text.startsWith(command)) return;
    const arg = text.slice(command.length).trim() || 'd6';
    const user = userOf(event);
    const key = `stats:${user}`;

    if (arg === 'stats') {
      const stats = await ctx.storage.get<UserStats>(key);
      await event.reply(stats ? `rolls: ${stats.rolls}, total: ${stats.total}, best: ${stats.best}` : 'no rolls yet');
      return;
    }
    const roll = parseRoll(arg);
    if (!roll) {
      await event.reply(`usage: ${command} 2d6`);
      return;
    }
    if (roll.count < 1 || roll.count > maxDice || roll.sides < 2 || roll.sides > maxSides) {
      await event.reply(`at most ${maxDice} dice with 2–${maxSides} sides`);
      return;
    }
    const dice = rollDice(roll);
    const sum = dice.reduce((a, b) => a + b, 0);
    const before = (await ctx.storage.get<UserStats>(key)) ?? { rolls: 0, total: 0, best: 0 };
    await ctx.storage.set(key, { rolls: before.rolls + 1, total: before.total + sum, best: Math.max(before.best, sum) });
    await event.reply(`🎲 ${roll.count}d${roll.sides}: ${dice.join(' + ')} = ${sum}`);
  };

  ctx.on('AT_MESSAGE_CREATE', handle);
  ctx.on('GROUP_AT_MESSAGE_CREATE', handle);
  ctx.on('C2C_MESSAGE_CREATE', handle);
}
