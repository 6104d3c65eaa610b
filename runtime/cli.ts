import { QQBotError } from './errors.ts';
import { VERSION } from './version.ts';

const HELP = `qqbot — run QQ bots with sandboxed, hot-reloaded plugins

Usage:
  qqbot start [bot.yaml] [--stay-up]   run every bot in the file (default ./bot.yaml); exits 1 when
                                       no bot is running, unless --stay-up (or whenNoBotRuns: stay)
        [--role gateway|worker|all]    gateway: hold the platform sessions, publish events to Redis;
                                       worker: run the plugins on them; all (default): both
        [--console-port N|off] [--metrics-port N|off] [--data-dir DIR]
                                       per-process overrides, for several processes of one bot.yaml
  qqbot check [bot.yaml]               validate the file and plugins, print bots, plugins and intents
  qqbot simulator [--port N] [--host H] [--bot appId:secret[:token]]... [--proactive off|quota|allowed]
                  [--allow-host NAME]...
                                       run the local QQ platform simulator (proactive sends: off
                                       by default, as on the platform since 2025-04-21); its control
                                       API answers loopback, IP-address and --allow-host names only
  qqbot new-plugin NAME [--dir plugins]
                                       scaffold a plugin package (publishable, with its test)
  qqbot plugin add NAME[@range]|./x.tgz [--bot NAME] [--yes]
                                       install a plugin from npm (or a tarball), show what it asks
                                       for, grant it (--yes, or asked on a terminal), enable it
  qqbot plugin upgrade NAME[@range]|./x.tgz [--yes]
                                       install another version; new permissions stay pending
  qqbot plugin approve NAME            grant what the installed version asks for
  qqbot plugin remove NAME             disable it on every bot, withdraw its grants, uninstall
                                       (plugin commands take --config FILE, default ./bot.yaml)
  qqbot --help | --version
`;

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  check: async () => (await import('./cli/check.ts')).checkCommand,
  start: async () => (await import('./cli/start.ts')).startCommand,
  simulator: async () => (await import('./cli/simulator.ts')).simulatorCommand,
  'new-plugin': async () => (await import('./cli/new-plugin.ts')).newPluginCommand,
  plugin: async () => (await import('./cli/plugin.ts')).pluginCommand,
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(HELP);
    return name === undefined ? 1 : 0;
  }
  if (name === '--version' || name === '-v') {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const load = commands[name];
  if (!load) {
    process.stderr.write(`qqbot: unknown command "${name}"\n\n${HELP}`);
    return 1;
  }
  try {
    return await (await load())(rest);
  } catch (error) {
    // Known errors carry a message written for the user; anything else is a bug worth a stack.
    process.stderr.write(error instanceof QQBotError ? `qqbot ${name}: ${error.message}\n` : `qqbot ${name}: ${(error as Error)?.stack ?? String(error)}\n`);
    return 1;
  }
}
