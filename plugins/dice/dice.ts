export interface Roll {
  count: number;
  sides: number;
}

/** `2d6`, `d20`, `3D8` → { count, sides }; anything else → undefined. */
export function parseRoll(text: string): Roll | undefined {
  const m = /^(\d*)d(\d+)$/i.exec(text.trim());
  if (!m) return undefined;
  return { count: m[1] === '' ? 1 : Number(m[1]), sides: Number(m[2]) };
}

export function rollDice(roll: Roll, random: () => number = Math.random): number[] {
  return Array.from({ length: roll.count }, () => 1 + Math.floor(random() * roll.sides));
}
