import { ControlInputError } from './errors.ts';

export interface Guild { id: string; name: string; icon: string; owner_id: string; owner: boolean; member_count: number; max_members: number; description: string; joined_at: string }
export interface Channel { id: string; guild_id: string; name: string; type: number; sub_type: number; position: number; parent_id: string; owner_id: string; private_type: number; speak_permission: number; application_id: string; permissions: string; botCanSpeak: boolean }
export interface User { id: string; username: string; avatar: string; bot: boolean }
export interface Member { user: User; nick: string; roles: string[]; joined_at: string }
export interface Role { id: string; name: string; color: number; hoist: number; number: number; member_limit: number }
export interface Group { group_openid: string; members: string[] }
export interface DirectSession { guild_id: string; channel_id: string; recipient_id: string; source_guild_id: string; create_time: string }

const JOINED = '2024-01-01T00:00:00+08:00';

/** Everything in the world, as plain JSON, for `SimulatorState` (unlike `snapshot()`, which is the public view). */
export interface WorldSnapshot {
  guilds: Guild[];
  channels: Channel[];
  members: Array<[string, Member[]]>;
  roles: Array<[string, Role[]]>;
  groups: Group[];
  c2cUsers: string[];
  dms: DirectSession[];
  users: User[];
  nextId: number;
}

/**
 * The small, editable world behind the OpenAPI. Guild ids are chosen so that
 * `(id >> 22) % 4` gives 0, 1, 2, 3 for the four seeded guilds (and 0, 1, 0, 1 for two shards).
 */
export class World {
  readonly guilds = new Map<string, Guild>();
  readonly channels = new Map<string, Channel>();
  readonly members = new Map<string, Map<string, Member>>();
  readonly roles = new Map<string, Map<string, Role>>();
  readonly groups = new Map<string, Group>();
  readonly c2cUsers = new Set<string>();
  readonly dms = new Map<string, DirectSession>();
  readonly users = new Map<string, User>();
  #nextId = 1;

  static readonly defaultUser: User = { id: '20000000000000001', username: 'simulator-user', avatar: '', bot: false };
  static readonly defaultAdmin: User = { id: '20000000000000002', username: 'simulator-admin', avatar: '', bot: false };
  static readonly defaultGroup = 'SIMGROUP0000000000000000000000001';
  static readonly defaultGroupMember = 'SIMMEMBER000000000000000000000001';
  static readonly defaultC2cUser = 'SIMUSER00000000000000000000000001';

  constructor(botUsers: User[], restored?: WorldSnapshot) {
    if (restored) {
      this.#restore(restored, botUsers);
      return;
    }
    this.users.set(World.defaultUser.id, World.defaultUser);
    this.users.set(World.defaultAdmin.id, World.defaultAdmin);
    for (const u of botUsers) this.users.set(u.id, u);
    for (let i = 0; i < 4; i++) {
      const id = String(((1_000_000_000_000n + BigInt(i)) << 22n) + 4242n);
      this.addGuild({ id, name: `Simulator Guild ${i}` }, botUsers);
    }
    const first = [...this.guilds.values()][0]!;
    // a channel where the bot may not speak, to exercise the permission error
    this.addChannel({ guild_id: first.id, name: 'announcements', botCanSpeak: false });
    this.groups.set(World.defaultGroup, { group_openid: World.defaultGroup, members: [World.defaultGroupMember] });
    this.c2cUsers.add(World.defaultC2cUser);
  }

  newId(prefix = ''): string {
    return `${prefix}${Date.now()}${String(this.#nextId++).padStart(6, '0')}`;
  }

  addGuild(input: { id?: string; name?: string }, botUsers: User[] = []): Guild {
    const id = input.id ?? String((BigInt(Date.now()) << 22n) + BigInt(this.#nextId++));
    if (!/^[0-9]{1,20}$/.test(id)) throw new ControlInputError('id', 'guild id must be a numeric string (it decides the shard)');
    if (this.guilds.has(id)) throw new ControlInputError('id', `guild ${id} exists`);
    const guild: Guild = { id, name: input.name ?? `Guild ${id}`, icon: '', owner_id: World.defaultAdmin.id, owner: false, member_count: 0, max_members: 1000, description: '', joined_at: JOINED };
    this.guilds.set(id, guild);
    this.roles.set(id, new Map([
      ['1', { id: '1', name: '普通成员', color: 0, hoist: 0, number: 0, member_limit: 1000 }],
      ['2', { id: '2', name: '管理员', color: 0, hoist: 1, number: 0, member_limit: 50 }],
      ['4', { id: '4', name: '创建者', color: 0, hoist: 1, number: 1, member_limit: 1 }],
      ['5', { id: '5', name: '子频道管理员', color: 0, hoist: 1, number: 0, member_limit: 50 }],
    ]));
    this.members.set(id, new Map());
    this.addMember(id, World.defaultAdmin, ['4']);
    this.addMember(id, World.defaultUser, ['1']);
    for (const b of botUsers) this.addMember(id, b, ['1']);
    this.addChannel({ guild_id: id, name: 'general' });
    return guild;
  }

  addChannel(input: { guild_id: string; id?: string; name?: string; type?: number; botCanSpeak?: boolean }): Channel {
    if (!this.guilds.has(input.guild_id)) throw new ControlInputError('guild_id', `no guild ${input.guild_id}`);
    const id = input.id ?? this.newId('3');
    if (this.channels.has(id)) throw new ControlInputError('id', `channel ${id} exists`);
    const channel: Channel = {
      id, guild_id: input.guild_id, name: input.name ?? `channel-${id}`, type: input.type ?? 0, sub_type: 0,
      position: this.channelsOf(input.guild_id).length, parent_id: '0', owner_id: World.defaultAdmin.id, private_type: 0,
      speak_permission: input.botCanSpeak === false ? 2 : 1, application_id: '', permissions: '6', botCanSpeak: input.botCanSpeak !== false,
    };
    this.channels.set(id, channel);
    return channel;
  }

  addMember(guildId: string, user: User, roles: string[] = ['1']): Member {
    const members = this.members.get(guildId);
    if (!members) throw new ControlInputError('guild_id', `no guild ${guildId}`);
    this.users.set(user.id, user);
    const member: Member = { user, nick: user.username, roles, joined_at: JOINED };
    members.set(user.id, member);
    const guild = this.guilds.get(guildId)!;
    guild.member_count = members.size;
    return member;
  }

  addGroup(openid: string, members: string[] = []): Group {
    const existing = this.groups.get(openid);
    if (existing) return existing;
    const group = { group_openid: openid, members };
    this.groups.set(openid, group);
    return group;
  }

  channelsOf(guildId: string): Channel[] {
    return [...this.channels.values()].filter((c) => c.guild_id === guildId);
  }

  /** The DM "guild" for a user, created on first use like `POST /users/@me/dms`. */
  openDirect(recipientId: string, sourceGuildId: string): DirectSession {
    const existing = this.dms.get(recipientId);
    if (existing) return existing;
    const dm: DirectSession = { guild_id: this.newId('9'), channel_id: this.newId('8'), recipient_id: recipientId, source_guild_id: sourceGuildId, create_time: new Date().toISOString() };
    this.dms.set(recipientId, dm);
    return dm;
  }

  directByGuild(guildId: string): DirectSession | undefined {
    for (const dm of this.dms.values()) if (dm.guild_id === guildId) return dm;
    return undefined;
  }

  export(): WorldSnapshot {
    return structuredClone({
      guilds: [...this.guilds.values()],
      channels: [...this.channels.values()],
      members: [...this.members].map(([g, m]) => [g, [...m.values()]] as [string, Member[]]),
      roles: [...this.roles].map(([g, r]) => [g, [...r.values()]] as [string, Role[]]),
      groups: [...this.groups.values()],
      c2cUsers: [...this.c2cUsers],
      dms: [...this.dms.values()],
      users: [...this.users.values()],
      nextId: this.#nextId,
    });
  }

  #restore(w: WorldSnapshot, botUsers: User[]): void {
    const copy = structuredClone(w);
    for (const u of copy.users) this.users.set(u.id, u);
    for (const g of copy.guilds) this.guilds.set(g.id, g);
    for (const c of copy.channels) this.channels.set(c.id, c);
    for (const [g, members] of copy.members) this.members.set(g, new Map(members.map((m) => [m.user.id, m])));
    for (const [g, roles] of copy.roles) this.roles.set(g, new Map(roles.map((r) => [r.id, r])));
    for (const group of copy.groups) this.groups.set(group.group_openid, group);
    for (const openid of copy.c2cUsers) this.c2cUsers.add(openid);
    for (const dm of copy.dms) this.dms.set(dm.recipient_id, dm);
    this.#nextId = copy.nextId;
    // a bot added since the export joins every guild, as a seeded one would have
    for (const guildId of this.guilds.keys()) {
      const members = this.members.get(guildId) ?? new Map<string, Member>();
      this.members.set(guildId, members);
      if (!this.roles.has(guildId)) this.roles.set(guildId, new Map());
      for (const b of botUsers) if (!members.has(b.id)) this.addMember(guildId, b, ['1']);
    }
  }

  publicChannel(c: Channel): Omit<Channel, 'botCanSpeak'> {
    const { botCanSpeak: _ignored, ...rest } = c;
    return rest;
  }

  snapshot(): Record<string, unknown> {
    return {
      guilds: [...this.guilds.values()].map((g) => ({ ...g, channels: this.channelsOf(g.id).map((c) => this.publicChannel(c)), members: [...(this.members.get(g.id)?.values() ?? [])], roles: [...(this.roles.get(g.id)?.values() ?? [])] })),
      groups: [...this.groups.values()],
      c2c_users: [...this.c2cUsers],
      dms: [...this.dms.values()],
    };
  }
}
