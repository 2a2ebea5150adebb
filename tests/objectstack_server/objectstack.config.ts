// The stack the sync tests run against (tests/objectstack_harness.py compiles it once per
// install and serves the artifact). The server adds id, created_at, updated_at, created_by,
// updated_by, owner_id and organization_id to every object itself: they are not declared here.
import { defineStack } from '@objectstack/spec';
import { Field, ObjectSchema } from '@objectstack/spec/data';

const contact = ObjectSchema.create({
  name: 'contact',
  label: 'Contact',
  fields: {
    first_name: Field.text({ label: 'First name' }),
    last_name: Field.text({ label: 'Last name' }),
    email: Field.email({ label: 'Email', unique: true }),
    status: Field.select({
      label: 'Status',
      options: [
        { label: 'Active', value: 'active' },
        { label: 'Inactive', value: 'inactive' },
        { label: 'Lead', value: 'lead' },
      ],
    }),
    lifetime_value: Field.number({ label: 'Lifetime value', precision: 2 }),
    birthday: Field.date({ label: 'Birthday' }),
    is_vip: Field.boolean({ label: 'VIP' }),
  },
  sharingModel: 'public_read_write',
  enable: { apiEnabled: true },
});

const account = ObjectSchema.create({
  name: 'account',
  label: 'Account',
  fields: {
    name: Field.text({ label: 'Name' }),
    domain: Field.text({ label: 'Domain' }),
    employees: Field.number({ label: 'Employees', precision: 0 }),
  },
  sharingModel: 'public_read_write',
  enable: { apiEnabled: true },
});

// `person` is the object the connector tests sync (tests/test_objectstack_connector.py, the
// contract peer tests/objectstack_peer.py): a unique email as the natural match key, and a
// validation rule refusing a negative score, so a batch can be refused record by record.
const person = ObjectSchema.create({
  name: 'person',
  label: 'Person',
  fields: {
    email: Field.text({ label: 'Email', unique: true }),
    name: Field.text({ label: 'Name' }),
    score: Field.number({ label: 'Score', scale: 0 }),
    status: Field.select({
      label: 'Status',
      options: [
        { label: 'Active', value: 'active' },
        { label: 'Inactive', value: 'inactive' },
        { label: 'Lead', value: 'lead' },
      ],
    }),
  },
  validations: [
    {
      name: 'score_not_negative',
      type: 'script',
      condition: 'record.score != null && record.score < 0',
      message: 'Score must be at least 0',
    },
  ],
  sharingModel: 'public_read_write',
  enable: { apiEnabled: true },
});

// Twins of `person` without the rule, for the SIGKILL tests (5,000 records each): objects of
// their own, so no other test has to empty them.
const crashObject = (name: string) =>
  ObjectSchema.create({
    name,
    label: name,
    fields: {
      email: Field.text({ label: 'Email', unique: true }),
      name: Field.text({ label: 'Name' }),
      score: Field.number({ label: 'Score', scale: 0 }),
      status: Field.text({ label: 'Status' }),
    },
    sharingModel: 'public_read_write',
    enable: { apiEnabled: true },
  });

export default defineStack({
  manifest: {
    id: 'sync_assets_test',
    version: '0.1.0',
    type: 'app',
    name: 'sync-assets test stack',
    engines: { protocol: '^17' },
  },
  objects: [contact, account, person, crashObject('crash_push'), crashObject('crash_pull')],
});
