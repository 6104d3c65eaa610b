import { QQBotError } from '../errors.ts';

/** The simulator was configured wrongly (bad `--bot` flag, bad option). */
export class SimulatorConfigError extends QQBotError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super('SIMULATOR_CONFIG', message, context);
  }
}

/** Bad input to the control API; `field` names the offending field (answered as HTTP 400). */
export class ControlInputError extends QQBotError {
  readonly field: string;

  constructor(field: string, message: string) {
    super('SIMULATOR_BAD_INPUT', message, { field });
    this.field = field;
  }
}
